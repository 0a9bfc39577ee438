"""Odd input never half-writes and never answers 500: nothing half-written, no 500s.

Every PATCH validates the whole change before it writes: a field that must not become null answers
422 and a later GET shows the record unchanged (and lists keep answering 200). Deep JSON, dates in
year 1 or 9999, integers past 64 bits, control characters and non-ASCII phone digits get a 4xx in
the error envelope, or are folded so one person stays one lead.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from urllib.parse import quote

import pytest

from capture_kit import answers, create_form, expo_form, submit
from leads_kit import LEADS, make_lead
from tasks_kit import TASKS, create_task

USERS = "/api/v1/users"
TEAMS = "/api/v1/teams"
FORMS = "/api/v1/forms"
RULES = "/api/v1/allocation-rules"
CONTRACTS = "/api/v1/contracts"
DEEP = 1500


def assert_envelope(r, status: int) -> None:
    assert r.status == status, (r.status, r.body)
    assert set(r.json) == {"error"} and r.json["error"]["code"], r.body


def deep_json(key: str = "name") -> str:
    return '{"' + key + '": ' + "[" * DEEP + '"x"' + "]" * DEEP + "}"


async def same_after(api, token: str, path: str, before: dict, patch: dict) -> None:
    """PATCH ``path`` with ``patch`` (plus the current version): 422, and nothing changed."""
    r = await api.patch(path, json={**patch, "version": before["version"]}, token=token)
    assert_envelope(r, 422)
    after = await api.get(path, token=token)
    assert after.status == 200, after.body
    assert after.json == before, f"{patch} changed the record"


# ---------------------------------------------------------------- PATCH: users
USER_NOT_NULL = ["name", "role", "tags", "capacity", "finance", "active", "password"]


@pytest.mark.gen_test
@pytest.mark.parametrize("field", USER_NOT_NULL)
async def test_user_field_cannot_become_null_and_users_list_keeps_working(api, people, field):
    admin, rep = await people.admin(), await people.rep()
    path = f"{USERS}/{rep.id}"
    before = (await api.get(path, token=admin.token)).json
    await same_after(api, admin.token, path, before, {field: None})
    assert (await api.get(USERS, token=admin.token)).status == 200
    # the rep is still signed in: nothing was written, so no session was revoked either
    assert (await api.get("/api/v1/me", token=rep.token)).status == 200


@pytest.mark.gen_test
async def test_clearing_a_reps_team_is_refused_before_writing(api, people):
    admin, rep = await people.admin(), await people.rep()
    path = f"{USERS}/{rep.id}"
    before = (await api.get(path, token=admin.token)).json
    r = await api.patch(path, json={"team_id": None, "version": before["version"]}, token=admin.token)
    assert_envelope(r, 422)
    assert r.error_code == "user.team_required"
    assert (await api.get(path, token=admin.token)).json == before
    assert (await api.get("/api/v1/me", token=rep.token)).status == 200
    # an admin may be without a team; a rep may move teams
    other = await people.team("华南销售部")
    moved = await api.patch(path, json={"team_id": other, "version": before["version"]}, token=admin.token)
    assert moved.status == 200 and moved.json["team_id"] == other


@pytest.mark.gen_test
async def test_a_customer_cannot_be_made_staff(api, people, wechat):
    admin = await people.admin()
    customer = await people.customer(wechat[0])
    path = f"{USERS}/{customer.id}"
    before = (await api.get(path, token=admin.token)).json
    for change in ({"role": "rep"}, {"role": "admin"}, {"role": "manager", "team_id": await people.team()}):
        r = await api.patch(path, json={**change, "version": before["version"]}, token=admin.token)
        assert_envelope(r, 422)
        assert r.error_code == "user.customer_role"
        assert (await api.get(path, token=admin.token)).json == before
    assert (await api.get("/api/v1/me", token=customer.token)).json["role"] == "customer"


@pytest.mark.gen_test
async def test_huge_versions_and_null_tags_are_422_not_500(api, people):
    admin, rep = await people.admin(), await people.rep()
    team = (await api.get(f"{TEAMS}/{rep.team_id}", token=admin.token)).json
    user = (await api.get(f"{USERS}/{rep.id}", token=admin.token)).json
    for version in (2**63, 2**64 + 1, 2**31):
        assert_envelope(await api.patch(f"{USERS}/{rep.id}", json={"name": "x", "version": version}, token=admin.token), 422)
        assert_envelope(await api.patch(f"{TEAMS}/{rep.team_id}", json={"name": "x", "version": version}, token=admin.token), 422)
    assert_envelope(await api.patch(f"{USERS}/{rep.id}", json={"tags": None}, token=admin.token, headers={"If-Match": "1"}), 422)
    assert (await api.get(f"{USERS}/{rep.id}", token=admin.token)).json == user
    assert (await api.get(f"{TEAMS}/{rep.team_id}", token=admin.token)).json == team
    r = await api.post(USERS, json={"username": "big.cap", "password": "long-password-1", "name": "x", "role": "admin", "capacity": 2**64}, token=admin.token)
    assert_envelope(r, 422)


# ---------------------------------------------------------------- PATCH: teams
TEAM_NOT_NULL = ["name", "active", "pool", "reclaim"]


@pytest.mark.gen_test
@pytest.mark.parametrize("field", TEAM_NOT_NULL)
async def test_team_field_cannot_become_null(api, people, field):
    admin = await people.admin()
    team_id = await people.team()
    path = f"{TEAMS}/{team_id}"
    before = (await api.get(path, token=admin.token)).json
    await same_after(api, admin.token, path, before, {field: None})
    assert (await api.get(TEAMS, token=admin.token)).status == 200


@pytest.mark.gen_test
async def test_team_pool_settings_refuse_null_and_huge_numbers(api, people):
    admin = await people.admin()
    team_id = await people.team()
    path = f"{TEAMS}/{team_id}"
    before = (await api.get(path, token=admin.token)).json
    for patch in (
        {"pool": {"claim_daily_limit": None}}, {"pool": {"claim_daily_limit": 2**64}},
        {"reclaim": {"no_followup_days": None}}, {"reclaim": {"enabled": None}},
        {"reclaim": {"no_followup_days_by_level": {"A": 2**64}}}, {"description": "a\u0000b"},
    ):
        await same_after(api, admin.token, path, before, patch)
    # description (optional) may be cleared
    r = await api.patch(path, json={"description": None, "version": before["version"]}, token=admin.token)
    assert r.status == 200 and r.json["description"] is None


# ---------------------------------------------------------------- PATCH: leads, tasks, forms, contracts, rules
@pytest.mark.gen_test
@pytest.mark.parametrize("field", ["name", "tags", "locked"])
async def test_lead_field_cannot_become_null(api, people, field):
    rep = await people.rep()
    lead = await make_lead(api, rep, tags=["vip"])
    path = f"{LEADS}/{lead['id']}"
    before = (await api.get(path, token=rep.token)).json
    await same_after(api, rep.token, path, before, {field: None})
    assert (await api.get(LEADS, token=rep.token)).status == 200


@pytest.mark.gen_test
async def test_lead_optional_fields_may_be_cleared(api, people):
    rep = await people.rep()
    lead = await make_lead(api, rep, company="某某公司", city="北京", notes="n", level="A", next_followup_at="2030-01-01T09:00:00+08:00")
    r = await api.patch(f"{LEADS}/{lead['id']}", json={"company": None, "city": None, "notes": None, "level": None, "next_followup_at": None, "version": lead["version"]}, token=rep.token)
    assert r.status == 200, r.body
    assert r.json["company"] is None and r.json["city"] is None and r.json["level"] is None and r.json["next_followup_at"] is None


@pytest.mark.gen_test
@pytest.mark.parametrize("field", ["title", "assignee_id", "due_at"])
async def test_task_field_cannot_become_null(api, people, field):
    rep = await people.rep()
    task = await create_task(api, rep)
    path = f"{TASKS}/{task['id']}"
    await same_after(api, rep.token, path, (await api.get(path, token=rep.token)).json, {field: None})
    assert (await api.get(TASKS, token=rep.token)).status == 200


@pytest.mark.gen_test
@pytest.mark.parametrize("field", ["title", "fields", "default_tags", "team_id", "active"])
async def test_form_field_cannot_become_null(api, people, field):
    admin = await people.admin()
    form = await create_form(api, admin, await people.team())
    path = f"{FORMS}/{form['id']}"
    await same_after(api, admin.token, path, (await api.get(path, token=admin.token)).json, {field: None})


@pytest.mark.gen_test
@pytest.mark.parametrize("field", ["title", "amount_fen", "start_date", "end_date"])
async def test_contract_draft_field_cannot_become_null(api, people, field):
    rep = await people.rep()
    lead = await make_lead(api, rep)
    r = await api.post(CONTRACTS, json={"lead_id": lead["id"], "title": "年度服务合同", "amount_fen": 5_000_000, "start_date": "2027-01-01", "end_date": "2027-12-31"}, token=rep.token)
    assert r.status == 201, r.body
    path = f"{CONTRACTS}/{r.json['id']}"
    await same_after(api, rep.token, path, (await api.get(path, token=rep.token)).json, {field: None})


@pytest.mark.gen_test
@pytest.mark.parametrize("field", ["name", "priority", "match", "strategy", "members", "active"])
async def test_allocation_rule_field_cannot_become_null(api, people, field):
    admin, rep = await people.admin(), await people.rep()
    r = await api.post(RULES, json={"name": "华北轮转", "team_id": rep.team_id, "strategy": "round_robin", "members": [rep.id]}, token=admin.token)
    assert r.status == 201, r.body
    path = f"{RULES}/{r.json['id']}"
    before = (await api.get(f"{RULES}?team_id={rep.team_id}", token=admin.token)).json["items"][0]
    r = await api.patch(path, json={field: None, "version": before["version"]}, token=admin.token)
    assert_envelope(r, 422)
    assert (await api.get(f"{RULES}?team_id={rep.team_id}", token=admin.token)).json["items"][0] == before


# ---------------------------------------------------------------- deep JSON
@pytest.mark.gen_test
async def test_deeply_nested_json_is_refused_for_staff_and_on_public_forms(api, people, form):
    rep = await people.rep()
    r = await api.request("POST", LEADS, body=deep_json(), token=rep.token)
    assert_envelope(r, 400)
    assert r.error_code == "request.too_deep"
    r = await api.request("POST", f"/api/v1/public/forms/{form['slug']}/submissions", body=deep_json("answers"))
    assert_envelope(r, 400)
    assert r.error_code == "request.too_deep"
    # brackets inside strings are text, not nesting
    lead = await api.post(LEADS, json={"name": "[" * 60, "notes": "{" * 1500}, token=rep.token)
    assert lead.status == 201, lead.body
    # ordinary nesting still works (a form with options is 4 deep)
    assert (await api.get(LEADS, token=rep.token)).status == 200


# ---------------------------------------------------------------- dates out of range
ODD_MOMENTS = ["0001-01-01T00:00:00+08:00", "9999-12-31T23:59:59-08:00", "9999-12-31T23:59:59+00:00", "1969-12-31T23:59:59+00:00"]


@pytest.mark.gen_test
async def test_datetimes_in_year_1_or_9999_are_422_everywhere(api, people):
    rep = await people.rep()
    lead = await make_lead(api, rep)
    task = await create_task(api, rep)
    for moment in ODD_MOMENTS:
        assert_envelope(await api.post(LEADS, json={"name": "x", "next_followup_at": moment}, token=rep.token), 422)
        assert_envelope(await api.patch(f"{LEADS}/{lead['id']}", json={"next_followup_at": moment, "version": lead["version"]}, token=rep.token), 422)
        assert_envelope(await api.post(f"{LEADS}/{lead['id']}/followups", json={"kind": "call", "content": "c", "next_followup_at": moment}, token=rep.token), 422)
        assert_envelope(await api.post(f"{LEADS}/{lead['id']}/followups", json={"kind": "call", "content": "c", "occurred_at": moment}, token=rep.token), 422)
        assert_envelope(await api.post(TASKS, json={"title": "t", "due_at": moment}, token=rep.token), 422)
        assert_envelope(await api.patch(f"{TASKS}/{task['id']}", json={"due_at": moment, "version": task["version"]}, token=rep.token), 422)
        assert_envelope(await api.get(f"{TASKS}?due_before={quote(moment)}", token=rep.token), 422)
    assert (await api.get(f"{LEADS}/{lead['id']}", token=rep.token)).json["version"] == lead["version"]
    assert (await api.get(f"{TASKS}/{task['id']}", token=rep.token)).json["version"] == task["version"]
    # a naive datetime is refused too (we would not know whose 9:00 it is)
    assert_envelope(await api.post(TASKS, json={"title": "t", "due_at": "2030-01-01T09:00:00"}, token=rep.token), 422)


@pytest.mark.gen_test
async def test_report_ranges_in_year_1_or_9999_are_422(api, people):
    manager = await people.manager()
    for report in ("funnel", "reps", "lifecycle"):
        for lo, hi in (("0001-01-01", "0001-01-31"), ("9999-12-01", "9999-12-31"), ("0001-01-01", "9999-12-31")):
            r = await api.get(f"/api/v1/reports/{report}?from={lo}&to={hi}", token=manager.token)
            assert_envelope(r, 422)
        assert (await api.get(f"/api/v1/reports/{report}?from=2026-01-01&to=2026-01-31", token=manager.token)).status == 200


@pytest.mark.gen_test
async def test_contract_dates_and_payments_out_of_range_are_422(api, people):
    rep = await people.rep()
    lead = await make_lead(api, rep)
    base = {"lead_id": lead["id"], "title": "合同", "amount_fen": 100, "start_date": "2027-01-01", "end_date": "2027-12-31"}
    for change in ({"end_date": "9999-12-31"}, {"start_date": "0001-01-01"}, {"payment_plan": [{"due_date": "9999-12-31", "amount_fen": 100}]}):
        assert_envelope(await api.post(CONTRACTS, json={**base, **change}, token=rep.token), 422)
    draft = await api.post(CONTRACTS, json=base, token=rep.token)
    assert draft.status == 201
    assert_envelope(await api.patch(f"{CONTRACTS}/{draft.json['id']}", json={"end_date": "9999-12-31", "version": 1}, token=rep.token), 422)
    assert_envelope(await api.post(f"{CONTRACTS}/{draft.json['id']}/payments", json={"amount_fen": 1, "received_at": "9999-12-31T23:59:59-08:00", "method": "cash"}, token=rep.token), 422)
    assert_envelope(await api.post(f"{CONTRACTS}/{draft.json['id']}/payments", json={"amount_fen": 2**64, "received_at": "2027-01-01T00:00:00+08:00", "method": "cash"}, token=rep.token), 422)


@pytest.mark.gen_test
async def test_renewing_a_contract_that_ends_at_the_edge_of_time_is_422(api, people, raw_db):
    rep, manager = await people.rep(), await people.manager()
    lead = await make_lead(api, rep)
    r = await api.post(CONTRACTS, json={"lead_id": lead["id"], "title": "长期合同", "amount_fen": 100, "start_date": "2100-01-01", "end_date": "2100-12-31"}, token=rep.token)
    assert r.status == 201, r.body
    c = (await api.post(f"{CONTRACTS}/{r.json['id']}/submit", json={"version": 1}, token=rep.token)).json
    c = (await api.post(f"{CONTRACTS}/{c['id']}/approve", json={"version": c["version"], "comment": ""}, token=manager.token)).json
    assert c["status"] == "active", c
    r = await api.post(f"{CONTRACTS}/{c['id']}/renew", token=rep.token)
    assert_envelope(r, 422)
    assert r.error_code == "contract.renewal_out_of_range"
    assert (await api.get(f"{CONTRACTS}/{c['id']}", token=rep.token)).json["renewed_by"] is None
    # a contract written before the bounds existed, ending 9999-12-31: still a clean 422
    raw_db.contracts.update_one({"_id": c["id"]}, {"$set": {"end_date": "9999-12-31"}})
    r = await api.post(f"{CONTRACTS}/{c['id']}/renew", token=rep.token)
    assert_envelope(r, 422)
    assert r.error_code == "contract.renewal_out_of_range"
    assert raw_db.contracts.count_documents({"renews": c["id"]}) == 0


# ---------------------------------------------------------------- control characters
@pytest.mark.gen_test
async def test_text_fields_refuse_control_characters(api, people, form):
    rep, admin = await people.rep(), await people.admin()
    for bad in ("a\u0001b", "a\u0000b", "a\u001bb", "a\u007fb", "a\u0085b", "a\u009bb", "a\u2028b", "a\tb", "a\nb"):
        r = await api.post(LEADS, json={"name": bad}, token=rep.token)
        assert_envelope(r, 422)
        assert r.json["error"]["details"][0]["field"] == "name"
    assert_envelope(await api.post(LEADS, json={"name": "x", "tags": ["a\u0001"]}, token=rep.token), 422)
    assert_envelope(await api.post(TEAMS, json={"name": "团队\u0007"}, token=admin.token), 422)
    assert_envelope(await api.post(TASKS, json={"title": "t\u0001", "due_at": "2030-01-01T09:00:00+08:00"}, token=rep.token), 422)
    # multi-line fields keep tabs and newlines, and still refuse the rest
    lead = await make_lead(api, rep, notes="第一行\n\t第二行")
    assert (await api.get(f"{LEADS}/{lead['id']}", token=rep.token)).json["notes"] == "第一行\n\t第二行"
    assert_envelope(await api.post(f"{LEADS}/{lead['id']}/followups", json={"kind": "note", "content": "a\u0001b"}, token=rep.token), 422)
    ok = await api.post(f"{LEADS}/{lead['id']}/followups", json={"kind": "note", "content": "电话\n\t约了周五"}, token=rep.token)
    assert ok.status == 201, ok.body
    # public form answers: text and textarea alike
    for key, bad in (("name", "张\u0001三"), ("message", "你好\u0000"), ("company", "a\nb")):
        r = await submit(api, {"answers": answers(**{key: bad})}, slug=form["slug"])
        assert_envelope(r, 422)
    assert (await submit(api, {"answers": answers(message="第一行\n第二行")}, slug=form["slug"])).status == 201
    # bidirectional overrides and isolates reorder what a reader sees (a name that displays as
    # another one): refused on one line and many; emoji joiners stay
    for bad in ("王\u202e总", "a\u202ab", "a\u2066b\u2069", "a\u061cb"):
        assert_envelope(await api.post(LEADS, json={"name": bad}, token=rep.token), 422)
        assert_envelope(await api.post(f"{LEADS}/{lead['id']}/followups", json={"kind": "note", "content": bad}, token=rep.token), 422)
    assert (await api.post(LEADS, json={"name": "家庭\U0001f468\u200d\U0001f469"}, token=rep.token)).status == 201
    # nothing with a control character reached the export
    export = await api.get(f"{LEADS}/export?format=xlsx", token=admin.token)
    assert export.status == 200


# ---------------------------------------------------------------- phone digits
@pytest.mark.gen_test
async def test_non_ascii_phone_digits_are_one_lead_and_share_the_rate_limit(api, people, form, raw_db):
    typed = ["13800138000", "１３８００１３８０００", "١٣٨٠٠١٣٨٠٠٠", "+８６ １３８-００１３-８０００", "۱۳۸۰۰۱۳۸۰۰۰"]
    for phone in typed:
        r = await submit(api, {"answers": answers(mobile=phone)}, slug=form["slug"])
        assert r.status == 201, (phone, r.body)
    assert raw_db.leads.count_documents({}) == 1  # one person, one lead
    # the per-phone limit (5 a minute) counted every spelling as the same number
    r = await submit(api, {"answers": answers(mobile="１３８00138000")}, slug=form["slug"])
    assert_envelope(r, 429)
    # staff capture and search fold the same way
    rep = await people.rep()
    lead = await make_lead(api, rep, phone="１３９００１３９０００")
    assert lead["phone"] == "139****9000"
    found = await api.get(f"{LEADS}?phone=13900139000", token=rep.token)
    assert [i["id"] for i in found.json["items"]] == [lead["id"]]
    # a number that is not digits after folding is still refused
    assert_envelope(await api.post(LEADS, json={"name": "x", "phone": "138〇〇138〇〇〇"}, token=rep.token), 422)


@pytest.mark.gen_test(timeout=60)
async def test_imported_rows_with_control_characters_are_rejected(api, people, raw_db):
    manager = await people.manager()
    rows = "name,phone,notes\r\n" "a\x01b,,\r\n" "Ok,,\"line 1\nline 2\"\r\n" "Esc,,bad\x1bnote\r\n"
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="contacts.csv"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + rows.encode() + f"\r\n--{boundary}--\r\n".encode()
    r = await api.request("POST", "/api/v1/leads/import", body=body, token=manager.token,
                          headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status in (200, 201, 202), r.body
    for _ in range(600):
        report = (await api.get(f"/api/v1/imports/{r.json['import_id']}", token=manager.token)).json
        if report["status"] in ("done", "failed"):
            break
        await asyncio.sleep(0.05)
    assert report["status"] == "done", report
    assert sorted((x["code"], x["field"]) for x in report["rejected"]) == [("import.control_character", "name"), ("import.control_character", "notes")]
    assert [d["name"] for d in raw_db.leads.find({})] == ["Ok"]


@pytest.mark.gen_test
async def test_huge_numbers_in_form_answers_and_definitions_are_422(api, people, form, raw_db):
    for age in (2**64, -(2**70)):
        r = await submit(api, {"answers": answers(age=age)}, slug=form["slug"])
        assert_envelope(r, 422)
    assert raw_db.leads.count_documents({}) == 0
    admin = await people.admin()
    spec = expo_form(slug="huge", team_id=await people.team())
    spec["fields"][4]["max"] = 2**64
    assert (await api.post(FORMS, json=spec, token=admin.token)).status == 201  # a float bound: fine
    r = await api.request("POST", FORMS, body=json.dumps(spec).replace('"max": 18446744073709551616', '"max": 1e400'), token=admin.token)
    assert_envelope(r, 422)


@pytest.mark.gen_test
async def test_openapi_shows_which_patch_fields_may_be_null(api):
    schemas = (await api.get("/openapi.json")).json["components"]["schemas"]
    user = schemas["UserUpdate"]["properties"]
    assert "anyOf" not in user["name"] and user["name"]["type"] == "string"
    assert {"type": "null"} in user["team_id"]["anyOf"]
    lead = schemas["LeadUpdate"]["properties"]
    assert "anyOf" not in lead["tags"] and {"type": "null"} in lead["notes"]["anyOf"]
