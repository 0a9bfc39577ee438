"""Team settings (团队设置) over real HTTP: read, change a group in part, reset a group to its
defaults, every out-of-order threshold refused with the field named and nothing written, versions,
who may read and write, the audit record, and the change felt at once on this instance."""

from __future__ import annotations

import pytest

TEAMS = "/api/v1/teams"


def path(team_id: str) -> str:
    return f"{TEAMS}/{team_id}/settings"


def stored(raw_db, team_id: str) -> dict:
    from bson import ObjectId

    team = raw_db.teams.find_one({"_id": ObjectId(team_id)})
    return {"version": team["version"], "settings": team.get("settings")}


@pytest.mark.gen_test
async def test_defaults_then_a_group_changed_in_part_keeps_its_other_fields(api, people, raw_db):
    admin = await people.admin()
    team = await people.team()
    r = await api.get(path(team), token=admin.token)
    assert r.status == 200, r.body
    assert r.json["customized"] == [] and r.json["customized_fields"] == {} and r.json["version"] == 1
    churn = r.json["settings"]["churn"]
    assert churn == {"days": 90, "days_by_level": {}, "days_by_layer": {}, "warning_days": [30, 60]}  # the environment's defaults
    assert r.json["settings"]["approval"]["tiers"][-1]["max_fen"] is None

    r = await api.patch(path(team), json={"version": 1, "churn": {"days": 120}}, token=admin.token)
    assert r.status == 200, r.body
    assert r.json["version"] == 2 and r.json["customized"] == ["churn"] and r.json["customized_fields"] == {"churn": ["days"]}
    assert r.json["settings"]["churn"] == {**churn, "days": 120}

    r = await api.patch(path(team), json={"churn": {"warning_days": [10, 100]}}, token=admin.token, headers={"If-Match": '"2"'})
    assert r.status == 200, r.body
    assert r.json["settings"]["churn"]["days"] == 120 and r.json["settings"]["churn"]["warning_days"] == [10, 100]
    assert r.json["customized_fields"] == {"churn": ["days", "warning_days"]}
    again = await api.get(path(team), token=admin.token)
    assert again.json == r.json
    assert stored(raw_db, team) == {"version": 3, "settings": {"churn": {"days": 120, "warning_days": [10, 100]}}}
    # the team's own document moved on too: PATCH /teams needs the new version
    team_doc = await api.get(f"{TEAMS}/{team}", token=admin.token)
    assert team_doc.json["version"] == 3


@pytest.mark.gen_test
async def test_a_group_set_to_null_goes_back_to_its_defaults(api, people, raw_db):
    admin = await people.admin()
    team = await people.team()
    r = await api.patch(path(team), json={"version": 1, "rfm": {"recency_days": [10, 20], "drives_churn": True}, "reminders": {"renewal_days": [10]}}, token=admin.token)
    assert r.status == 200, r.body
    assert r.json["customized"] == ["reminders", "rfm"]
    r = await api.patch(path(team), json={"version": 2, "rfm": None}, token=admin.token)
    assert r.status == 200, r.body
    assert r.json["customized"] == ["reminders"]
    assert r.json["settings"]["rfm"]["recency_days"] == [30, 180] and r.json["settings"]["rfm"]["drives_churn"] is False
    assert r.json["settings"]["reminders"]["renewal_days"] == [10]
    assert stored(raw_db, team)["settings"] == {"reminders": {"renewal_days": [10]}}


BAD = [
    ({"rfm": {"recency_days": [180, 30]}}, "rfm.recency_days"),
    ({"rfm": {"frequency": [1, 3]}}, "rfm.frequency"),
    ({"rfm": {"monetary_fen": [100, 100]}}, "rfm.monetary_fen"),
    ({"rfm": {"layer_scores": {"A": 5, "B": 6}}}, "rfm.layer_scores.A"),
    ({"rfm": {"layer_scores": {"A": 8}}}, "rfm.layer_scores"),
    ({"churn": {"days": 50}}, "churn.warning_days.1"),  # the default warnings 30, 60
    ({"churn": {"days_by_level": {"A": 20}}}, "churn.warning_days.0"),
    ({"churn": {"days_by_layer": {"B": 45}, "warning_days": [30, 50]}}, "churn.warning_days.1"),
    ({"approval": {"tiers": [{"max_fen": 200, "steps": [{"type": "manager"}]}, {"max_fen": 100, "steps": [{"type": "admin"}]},
                             {"max_fen": None, "steps": [{"type": "admin"}]}]}}, "approval.tiers.1.max_fen"),
    ({"approval": {"tiers": [{"max_fen": None, "steps": [{"type": "manager"}]}, {"max_fen": None, "steps": [{"type": "admin"}]}]}}, "approval.tiers.0.max_fen"),
    ({"approval": {"tiers": [{"max_fen": 100, "steps": [{"type": "manager"}]}]}}, "approval.tiers.0.max_fen"),
    ({"approval": {"tiers": [{"max_fen": None, "steps": [{"type": "all_of"}]}]}}, "approval.tiers.0.steps.0.users"),
    ({"approval": {"tiers": [{"max_fen": None, "steps": [{"type": "any_of", "users": ["nobody.here"]}]}]}}, "approval.tiers.0.steps.0.users.0"),
    ({"first_contact": {"remind_after_h": 10, "manager_after_h": 5}}, "first_contact.manager_after_h"),
    ({"first_contact": {"manager_after_h": 30}}, "first_contact.pool_after_h"),  # the default pool step is 24 h
    ({"reminders": {"quiet_hours": "10:00-10:00"}}, "reminders.quiet_hours"),
    ({"reminders": {"quiet_hours": "21:00-24:00"}}, "reminders.quiet_hours"),
    ({"business_hours": {"start": "18:00", "end": "09:00"}}, "business_hours.end"),
    ({"business_hours": {"days": [1, 1]}}, "business_hours.days"),
    # one good group beside a bad one: neither is written
    ({"churn": {"days": 200}, "rfm": {"recency_days": [180, 30]}}, "rfm.recency_days"),
]


@pytest.mark.gen_test
async def test_every_out_of_order_threshold_is_422_naming_the_field_and_nothing_is_written(api, people, raw_db):
    admin = await people.admin()
    team = await people.team()
    before = stored(raw_db, team)
    for body, field in BAD:
        r = await api.patch(path(team), json={"version": 1, **body}, token=admin.token, headers={"Accept-Language": "en"})
        assert r.status == 422, (body, r.body)
        fields = [d["field"] for d in r.json["error"]["details"]]
        assert any(f == field or f.startswith(field + ".") for f in fields), (body, fields)
        assert stored(raw_db, team) == before, body
    zh = await api.patch(path(team), json={"version": 1, "churn": {"days": 50}}, token=admin.token)
    assert zh.json["error"]["details"][0]["message"] == "须小于 churn.days（50 天）"


@pytest.mark.gen_test
async def test_named_approvers_must_be_active_managers_or_admins(api, people, raw_db):
    admin = await people.admin()
    manager, rep = await people.manager(username="zhao.manager"), await people.rep()
    gone = await people.manager()
    await api.patch(f"/api/v1/users/{gone.id}", json={"version": gone.user["version"], "active": False}, token=admin.token)
    team = await people.team()

    def tiers(users: list[str]) -> dict:
        return {"approval": {"tiers": [{"max_fen": 10_000_000, "steps": [{"type": "manager"}]},
                                       {"max_fen": None, "steps": [{"type": "manager"}, {"type": "all_of", "users": users}]}]}}

    r = await api.patch(path(team), json={"version": 1, **tiers([rep.id, gone.id, "zhao.manager"])}, token=admin.token)
    assert r.status == 422, r.body
    bad = {d["field"]: d["value"] for d in r.json["error"]["details"]}
    assert bad == {"approval.tiers.1.steps.1.users.0": rep.id, "approval.tiers.1.steps.1.users.1": gone.id}
    assert stored(raw_db, team)["settings"] is None
    r = await api.patch(path(team), json={"version": 1, **tiers(["zhao.manager", admin.id])}, token=admin.token)
    assert r.status == 200, r.body
    assert r.json["settings"]["approval"]["tiers"][1]["steps"][1] == {"type": "all_of", "users": ["zhao.manager", admin.id]}
    assert manager.id


@pytest.mark.gen_test
async def test_a_stale_version_is_412_and_a_missing_one_422(api, people, raw_db):
    admin = await people.admin()
    team = await people.team()
    assert (await api.patch(path(team), json={"version": 1, "churn": {"days": 100}}, token=admin.token)).status == 200
    stale = await api.patch(path(team), json={"version": 1, "churn": {"days": 200}}, token=admin.token)
    assert (stale.status, stale.error_code) == (412, "team.version_mismatch")
    missing = await api.patch(path(team), json={"churn": {"days": 200}}, token=admin.token)
    assert (missing.status, missing.error_code) == (422, "request.version_required")
    assert stored(raw_db, team) == {"version": 2, "settings": {"churn": {"days": 100}}}
    unknown = await api.patch(path("0" * 24), json={"version": 1, "churn": {"days": 200}}, token=admin.token)
    assert (unknown.status, unknown.error_code) == (404, "team.not_found")


@pytest.mark.gen_test
async def test_a_manager_reads_their_own_team_only_and_a_rep_neither(api, people, raw_db):
    admin = await people.admin()
    manager, rep = await people.manager(), await people.rep()
    other = await people.team("华南销售部")
    own = manager.team_id
    r = await api.get(path(own), token=manager.token)
    assert r.status == 200 and r.json["team_id"] == own
    assert (await api.get(path(other), token=manager.token)).status == 404
    write = await api.patch(path(own), json={"version": 1, "churn": {"days": 100}}, token=manager.token)
    assert (write.status, write.error_code) == (403, "auth.forbidden")
    for method in ("get", "patch"):
        r = await getattr(api, method)(path(own), **({"json": {"version": 1}} if method == "patch" else {}), token=rep.token)
        assert (r.status, r.error_code) == (403, "auth.forbidden"), method
    assert stored(raw_db, own) == {"version": 1, "settings": None}
    assert admin.id


@pytest.mark.gen_test
async def test_a_change_is_audited_with_old_and_new_values(api, people, raw_db):
    admin = await people.admin()
    team = await people.team()
    r = await api.patch(path(team), json={"version": 1, "churn": {"days": 30, "warning_days": [7, 15]}, "reminders": {"quiet_hours": ""}}, token=admin.token)
    assert r.status == 200, r.body
    await api.patch(path(team), json={"version": 2, "churn": None}, token=admin.token)
    records = list(raw_db.audit_log.find({"action": "team.settings", "target_id": team}).sort("at", 1))
    assert [rec["actor_id"] for rec in records] == [admin.id, admin.id]
    first, reset = records[0]["details"], records[1]["details"]
    assert first["groups"] == ["churn", "reminders"] and first["reset"] == []
    assert first["fields"] == [
        {"field": "churn.days", "old": 90, "new": 30},
        {"field": "churn.warning_days"},  # a list: named, not copied
        {"field": "reminders.quiet_hours", "old": "21:00-08:00", "new": ""},
    ]
    assert reset["reset"] == ["churn"] and {"field": "churn.days", "old": 30, "new": 90} in reset["fields"]


@pytest.mark.gen_test
async def test_a_change_is_felt_at_once_on_this_instance(api, people, ctx):
    admin = await people.admin()
    team = await people.team()
    assert (await ctx.users.team_settings(team)).churn.days == 90  # now cached on this instance
    assert (await api.patch(path(team), json={"version": 1, "churn": {"days": 45, "warning_days": [20]}}, token=admin.token)).status == 200
    assert (await ctx.users.team_settings(team)).churn.days == 45
    book = await ctx.users.settings_book()
    assert book.of(team).churn.days == 45 and book.of(None).churn.days == 90 and book.of("0" * 24).churn.days == 90
