"""Forms as admins design them: create, read, edit (a new version each time, the old definition
kept), deactivate, and refuse definitions the mini-program could not render or the server could
not validate against. Who may do it: admins write, managers read their team's, nobody else.
"""

from __future__ import annotations

import copy

import pytest
from bson import ObjectId

from capture_kit import FORMS, PHONE, answers, create_form, detail_fields, expo_form, lead_of, submit

pytestmark = pytest.mark.gen_test


# ---------------------------------------------------------------- create and read
async def test_admin_creates_a_form_with_every_field_type(api, people, raw_db):
    admin = await people.admin()
    team = await people.team()
    r = await api.post(FORMS, json=expo_form(team_id=team), token=admin.token)
    assert r.status == 201, r.body
    form = r.json
    assert form["version"] == 1 and form["active"] is True
    assert form["slug"] == "expo-2026" and form["team_id"] == team
    assert form["default_tags"] == ["expo"]
    by_key = {f["key"]: f for f in form["fields"]}
    assert [f["type"] for f in form["fields"]] == ["text", "phone", "email", "text", "number", "select", "multiselect", "date", "textarea"]
    assert by_key["name"]["required"] is True and by_key["name"]["max_length"] == 20
    assert by_key["age"]["min"] == 18 and by_key["age"]["max"] == 99
    assert by_key["interest"]["options"][0] == {"value": "crm", "label": "CRM", "tag": "crm"}
    assert by_key["message"]["maps_to"] == "notes"

    # The admin reads it back by id, and it is in the list.
    r = await api.get(f"{FORMS}/{form['id']}", token=admin.token)
    assert r.status == 200 and r.json == form
    r = await api.get(FORMS, token=admin.token)
    assert r.status == 200 and [f["id"] for f in r.json["items"]] == [form["id"]]
    assert raw_db.audit_log.count_documents({"action": "form.create", "target_id": form["id"]}) == 1


async def test_public_form_shows_the_definition_without_internal_settings(api, people):
    admin = await people.admin()
    await create_form(api, admin, await people.team())
    r = await api.get("/api/v1/public/forms/expo-2026")
    assert r.status == 200, r.body
    public = r.json
    assert public["slug"] == "expo-2026" and public["title"] == "2026 展会报名" and public["version"] == 1
    assert [f["key"] for f in public["fields"]] == [f["key"] for f in expo_form()["fields"]]
    # What staff configured for routing and tagging stays on the server.
    assert "team_id" not in public and "default_tags" not in public and "id" not in public
    interest = next(f for f in public["fields"] if f["key"] == "interest")
    assert interest["options"] == [{"value": "crm", "label": "CRM"}, {"value": "erp", "label": "ERP"}, {"value": "other", "label": "其他"}]
    assert all("maps_to" not in f for f in public["fields"])


async def test_slug_is_unique(api, people, raw_db):
    admin = await people.admin()
    team = await people.team()
    await create_form(api, admin, team)
    r = await api.post(FORMS, json=expo_form(team_id=team, title="另一个"), token=admin.token)
    assert r.status == 409 and r.error_code == "form.slug_taken", r.body
    assert raw_db.forms.count_documents({}) == 1


# ---------------------------------------------------------------- who may
@pytest.mark.parametrize("role", ["rep", "manager", "customer"])
async def test_only_admins_create_forms(api, people, wechat, raw_db, role):
    team = await people.team()
    person = await people.customer(wechat[0]) if role == "customer" else await getattr(people, role)()
    r = await api.post(FORMS, json=expo_form(team_id=team), token=person.token)
    assert r.status == 403 and r.error_code == "auth.forbidden", r.body
    assert raw_db.forms.count_documents({}) == 0


async def test_anonymous_cannot_create_or_list_forms(api, people, raw_db):
    team = await people.team()
    r = await api.post(FORMS, json=expo_form(team_id=team))
    assert r.status == 401 and r.error_code == "auth.required"
    r = await api.get(FORMS)
    assert r.status == 401
    assert raw_db.forms.count_documents({}) == 0


@pytest.mark.parametrize("role", ["rep", "manager", "customer"])
async def test_only_admins_edit_forms(api, people, wechat, raw_db, role):
    admin = await people.admin()
    form = await create_form(api, admin, await people.team())
    person = await people.customer(wechat[0]) if role == "customer" else await getattr(people, role)()
    r = await api.patch(f"{FORMS}/{form['id']}", json={"version": 1, "title": "改掉", "active": False}, token=person.token)
    assert r.status == 403, r.body
    stored = raw_db.forms.find_one()
    assert stored["title"] == "2026 展会报名" and stored["active"] is True and stored["version"] == 1


async def test_manager_reads_own_team_forms_only(api, people):
    admin = await people.admin()
    north = await people.team("华北销售部")
    south = await people.team("华南销售部")
    mine = await create_form(api, admin, north, slug="north-expo")
    theirs = await create_form(api, admin, south, slug="south-expo")
    manager = await people.manager("华北销售部")
    r = await api.get(FORMS, token=manager.token)
    assert r.status == 200 and [f["id"] for f in r.json["items"]] == [mine["id"]]
    assert (await api.get(f"{FORMS}/{mine['id']}", token=manager.token)).status == 200
    r = await api.get(f"{FORMS}/{theirs['id']}", token=manager.token)
    assert r.status == 404 and r.error_code == "form.not_found"
    rep = await people.rep("华北销售部")
    assert (await api.get(FORMS, token=rep.token)).status == 403
    assert (await api.get(f"{FORMS}/{mine['id']}", token=rep.token)).status == 403


# ---------------------------------------------------------------- versions
async def test_edit_makes_a_new_version_and_keeps_the_old_definition(api, people, raw_db):
    admin = await people.admin()
    form = await create_form(api, admin, await people.team())
    r = await submit(api, {"answers": answers()})
    assert r.status == 201, r.body
    first_lead = lead_of(raw_db, r)

    new_fields = [f for f in expo_form()["fields"] if f["key"] != "age"] + [
        {"key": "budget", "label": "预算（万元）", "type": "number", "required": True, "min": 0},
    ]
    r = await api.patch(f"{FORMS}/{form['id']}", json={"version": 1, "fields": new_fields, "title": "2026 展会报名（新版）"}, token=admin.token)
    assert r.status == 200, r.body
    assert r.json["version"] == 2 and r.json["title"] == "2026 展会报名（新版）"
    assert "budget" in [f["key"] for f in r.json["fields"]]

    # The definition version 1 submissions were made against is kept.
    old = raw_db.form_versions.find_one({"form_id": form["id"], "version": 1})
    assert old is not None and old["title"] == "2026 展会报名"
    assert [f["key"] for f in old["fields"]] == [f["key"] for f in form["fields"]]

    # The public form now shows version 2; answers are checked against it.
    public = (await api.get("/api/v1/public/forms/expo-2026")).json
    assert public["version"] == 2 and "age" not in [f["key"] for f in public["fields"]]
    r = await submit(api, {"answers": answers(mobile="13900001111")})
    assert r.status == 422 and set(detail_fields(r)) == {"answers.age", "answers.budget"}, r.body
    r = await submit(api, {"answers": answers(mobile="13900001111", age=None, budget=50)})
    assert r.status == 201, r.body
    second = r.json

    # Each submission records the version it was made against, on the lead and on the event.
    assert raw_db.leads.find_one({"_id": first_lead})["source"]["form_version"] == 1
    assert raw_db.leads.find_one({"_id": lead_of(raw_db, second)})["source"]["form_version"] == 2
    assert raw_db.lead_events.find_one({"_id": ObjectId(second["submission_id"])})["data"]["form_version"] == 2

    # A resubmission by the first person under version 2 records version 2 on its event.
    r = await submit(api, {"answers": answers(age=None, budget=10)})
    assert r.status == 201 and lead_of(raw_db, r) == first_lead
    event = raw_db.lead_events.find_one({"_id": ObjectId(r.json["submission_id"])})
    assert event["kind"] == "resubmitted" and event["data"]["form_version"] == 2


async def test_each_edit_is_its_own_version(api, people, raw_db):
    admin = await people.admin()
    form = await create_form(api, admin, await people.team())
    for version in (1, 2, 3):
        r = await api.patch(f"{FORMS}/{form['id']}", json={"version": version, "title": f"第 {version + 1} 版"}, token=admin.token)
        assert r.status == 200 and r.json["version"] == version + 1, r.body
    assert sorted(d["version"] for d in raw_db.form_versions.find({"form_id": form["id"]})) == [1, 2, 3]
    assert raw_db.form_versions.find_one({"form_id": form["id"], "version": 2})["title"] == "第 2 版"


async def test_stale_version_is_refused_and_changes_nothing(api, people, raw_db):
    admin = await people.admin()
    form = await create_form(api, admin, await people.team())
    assert (await api.patch(f"{FORMS}/{form['id']}", json={"version": 1, "title": "A"}, token=admin.token)).status == 200
    r = await api.patch(f"{FORMS}/{form['id']}", json={"version": 1, "title": "B"}, token=admin.token)
    assert r.status == 412 and r.error_code == "form.version_mismatch", r.body
    stored = raw_db.forms.find_one()
    assert stored["title"] == "A" and stored["version"] == 2


async def test_edit_needs_a_version_and_accepts_if_match(api, people, raw_db):
    admin = await people.admin()
    form = await create_form(api, admin, await people.team())
    r = await api.patch(f"{FORMS}/{form['id']}", json={"title": "无版本"}, token=admin.token)
    assert r.status == 422 and r.error_code == "request.version_required"
    assert raw_db.forms.find_one()["title"] == "2026 展会报名"
    r = await api.patch(f"{FORMS}/{form['id']}", json={"title": "带 If-Match"}, token=admin.token, headers={"If-Match": '"1"'})
    assert r.status == 200 and r.json["version"] == 2 and r.json["title"] == "带 If-Match"


@pytest.mark.parametrize("form_id", ["000000000000000000000000", "not-an-id"])
async def test_edit_unknown_form_is_404(api, people, form_id):
    admin = await people.admin()
    await create_form(api, admin, await people.team())
    r = await api.patch(f"{FORMS}/{form_id}", json={"version": 1, "title": "x"}, token=admin.token)
    assert r.status == 404 and r.error_code == "form.not_found"


# ---------------------------------------------------------------- deactivation
async def test_deactivated_form_is_gone_for_customers_but_kept_for_admins(api, people, raw_db):
    admin = await people.admin()
    form = await create_form(api, admin, await people.team())
    r = await api.patch(f"{FORMS}/{form['id']}", json={"version": 1, "active": False}, token=admin.token)
    assert r.status == 200 and r.json["active"] is False

    r = await api.get("/api/v1/public/forms/expo-2026")
    assert r.status == 404 and r.error_code == "form.not_found"
    r = await submit(api, {"answers": answers()})
    assert r.status == 404 and r.error_code == "form.not_found"
    assert raw_db.leads.count_documents({}) == 0 and raw_db.lead_events.count_documents({}) == 0

    r = await api.get(f"{FORMS}/{form['id']}", token=admin.token)
    assert r.status == 200 and r.json["active"] is False

    # Reactivated, it takes submissions again.
    assert (await api.patch(f"{FORMS}/{form['id']}", json={"version": 2, "active": True}, token=admin.token)).status == 200
    assert (await api.get("/api/v1/public/forms/expo-2026")).status == 200
    assert (await submit(api, {"answers": answers()})).status == 201


async def test_form_created_inactive_is_not_public(api, people):
    admin = await people.admin()
    await create_form(api, admin, await people.team(), active=False)
    r = await api.get("/api/v1/public/forms/expo-2026")
    assert r.status == 404 and r.error_code == "form.not_found"


# ---------------------------------------------------------------- bad definitions
def _with_fields(*fields: dict) -> list[dict]:
    return [{"key": "name", "label": "姓名", "type": "text"}, *fields]


BAD_DEFINITIONS = {
    "select without options": {"fields": _with_fields({"key": "pick", "label": "选择", "type": "select"})},
    "multiselect with empty options": {"fields": _with_fields({"key": "pick", "label": "选择", "type": "multiselect", "options": []})},
    "options on a text field": {"fields": _with_fields({"key": "pick", "label": "x", "type": "text", "options": [{"value": "a", "label": "A"}]})},
    "duplicate option values": {"fields": _with_fields({"key": "pick", "label": "x", "type": "select", "options": [{"value": "a", "label": "A"}, {"value": "a", "label": "B"}]})},
    "duplicate keys": {"fields": _with_fields({"key": "name", "label": "姓名 2", "type": "text"})},
    "two phone fields": {"fields": _with_fields({"key": "mobile", "label": "手机", "type": "phone"}, {"key": "mobile2", "label": "备用手机", "type": "phone"})},
    "key with a leading $": {"fields": _with_fields({"key": "$where", "label": "x", "type": "text"})},
    "key with a dot": {"fields": _with_fields({"key": "a.b", "label": "x", "type": "text"})},
    "key with upper case and spaces": {"fields": _with_fields({"key": "My Field", "label": "x", "type": "text"})},
    "option value with $": {"fields": _with_fields({"key": "pick", "label": "x", "type": "select", "options": [{"value": "$gt", "label": "A"}]})},
    "unknown field type": {"fields": _with_fields({"key": "pic", "label": "照片", "type": "file"})},
    "min above max": {"fields": _with_fields({"key": "n", "label": "数", "type": "number", "min": 10, "max": 1})},
    "min_length above max_length": {"fields": _with_fields({"key": "t", "label": "t", "type": "text", "min_length": 50, "max_length": 5})},
    "max_length beyond the cap": {"fields": _with_fields({"key": "t", "label": "t", "type": "textarea", "max_length": 100000})},
    "same lead field mapped twice": {"fields": _with_fields({"key": "n2", "label": "n", "type": "text", "maps_to": "company"}, {"key": "n3", "label": "n", "type": "text", "maps_to": "company"})},
    "no fields": {"fields": []},
    "unknown property on a field": {"fields": _with_fields({"key": "t", "label": "t", "type": "text", "visible_if": {"$where": "1"}})},
    "operator object as a label": {"fields": _with_fields({"key": "t", "label": {"$ne": None}, "type": "text"})},
    "bad slug": {"slug": "Expo 2026!"},
    "server-owned property (version)": {"version": 7},
    "server-owned property (created_by)": {"created_by": "someone"},
}


@pytest.mark.parametrize("case", list(BAD_DEFINITIONS))
async def test_bad_form_definition_is_refused(api, people, raw_db, case):
    admin = await people.admin()
    body = {**expo_form(team_id=await people.team()), **copy.deepcopy(BAD_DEFINITIONS[case])}
    r = await api.post(FORMS, json=body, token=admin.token)
    assert r.status == 422, (case, r.body)
    assert r.json["error"]["details"], r.body
    assert raw_db.forms.count_documents({}) == 0


async def test_bad_definition_names_the_field(api, people):
    admin = await people.admin()
    body = expo_form(team_id=await people.team(), fields=_with_fields({"key": "$where", "label": "x", "type": "text"}))
    r = await api.post(FORMS, json=body, token=admin.token)
    assert r.status == 422 and "fields.1.key" in detail_fields(r), r.body
    body = expo_form(team_id=await people.team(), fields=_with_fields({"key": "pick", "label": "x", "type": "select"}))
    r = await api.post(FORMS, json=body, token=admin.token)
    assert r.status == 422 and any((f or "").startswith("fields.1") for f in detail_fields(r)), r.body


async def test_unknown_team_is_refused(api, people, raw_db):
    admin = await people.admin()
    r = await api.post(FORMS, json=expo_form(team_id="0123456789abcdef01234567"), token=admin.token)
    assert r.status == 422 and r.error_code == "team.not_found" and detail_fields(r) == ["team_id"]
    assert raw_db.forms.count_documents({}) == 0


@pytest.mark.parametrize("case", ["select without options", "two phone fields", "key with a leading $", "duplicate keys"])
async def test_bad_edit_is_refused_and_keeps_the_form(api, people, raw_db, case):
    admin = await people.admin()
    form = await create_form(api, admin, await people.team())
    r = await api.patch(f"{FORMS}/{form['id']}", json={"version": 1, **BAD_DEFINITIONS[case]}, token=admin.token)
    assert r.status == 422, r.body
    stored = raw_db.forms.find_one()
    assert stored["version"] == 1 and [f["key"] for f in stored["fields"]] == [f["key"] for f in form["fields"]]
    assert raw_db.form_versions.count_documents({}) == 0
    # The form still works as before.
    r = await submit(api, {"answers": answers(mobile=PHONE)})
    assert r.status == 201, r.body


async def test_edit_that_leaves_field_settings_at_their_defaults_keeps_the_form_working(api, people, raw_db):
    """Fields sent without ``required`` (it defaults to false) are stored complete, so the edited
    form still reads back, is still public and still validates submissions."""
    admin = await people.admin()
    form = await create_form(api, admin, await people.team())
    fields = [
        {"key": "name", "label": "姓名", "type": "text"},
        {"key": "mobile", "label": "手机", "type": "phone", "required": True},
    ]
    r = await api.patch(f"{FORMS}/{form['id']}", json={"version": 1, "fields": fields}, token=admin.token)
    assert r.status == 200, r.body
    assert [(f["key"], f["required"]) for f in r.json["fields"]] == [("name", False), ("mobile", True)]
    assert all("required" in f for f in raw_db.forms.find_one()["fields"])
    assert (await api.get(f"{FORMS}/{form['id']}", token=admin.token)).status == 200
    public = await api.get("/api/v1/public/forms/expo-2026")
    assert public.status == 200 and public.json["version"] == 2
    r = await submit(api, {"answers": {"mobile": PHONE}})
    assert r.status == 201, r.body


@pytest.mark.parametrize("change", [{"title": None}, {"fields": None}, {"active": None}, {"team_id": None}, {"default_tags": None}])
async def test_null_in_an_edit_is_refused_and_keeps_the_form(api, people, raw_db, change):
    admin = await people.admin()
    form = await create_form(api, admin, await people.team())
    r = await api.patch(f"{FORMS}/{form['id']}", json={"version": 1, **change}, token=admin.token)
    assert r.status == 422 and detail_fields(r) == list(change), r.body
    stored = raw_db.forms.find_one()
    assert stored["version"] == 1 and stored["title"] == form["title"] and stored["team_id"] == form["team_id"]
    assert (await api.get(f"{FORMS}/{form['id']}", token=admin.token)).status == 200
    assert (await api.get("/api/v1/public/forms/expo-2026")).status == 200


async def test_description_can_be_cleared(api, people):
    admin = await people.admin()
    form = await create_form(api, admin, await people.team())
    r = await api.patch(f"{FORMS}/{form['id']}", json={"version": 1, "description": None}, token=admin.token)
    assert r.status == 200 and r.json["description"] is None and r.json["version"] == 2
