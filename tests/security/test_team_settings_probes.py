"""Probes of PATCH /teams/{id}/settings: operator keys, huge lists, nulls inside groups, unknown
groups and fields, type confusion — each a 422 (never a 500) and nothing written; and the route is
closed to everyone but admins (managers read their own team only)."""

from __future__ import annotations

import pytest
from bson import ObjectId

TEAMS = "/api/v1/teams"

PROBES = [
    # operator keys and dotted keys, anywhere in the body
    {"churn": {"$set": {"days": 1}}},
    {"$unset": {"settings": ""}},
    {"settings.churn": {"days": 1}},
    {"rfm": {"layer_scores": {"$gt": 1}}},
    {"approval": {"tiers": [{"max_fen": None, "steps": [{"type": "any_of", "users": [{"$ne": None}]}]}]}},
    # huge lists
    {"churn": {"warning_days": list(range(1, 5001))}},
    {"approval": {"tiers": [{"max_fen": i + 1, "steps": [{"type": "manager"}]} for i in range(200)] + [{"max_fen": None, "steps": [{"type": "admin"}]}]}},
    {"business_hours": {"holidays": [f"2027-01-{d:02d}" for d in range(1, 29)] * 20}},
    {"approval": {"tiers": [{"max_fen": None, "steps": [{"type": "any_of", "users": ["x" * 5000]}]}]}},
    {"reasons": {"lost": [{"code": f"c{i}", "label": "原因"} for i in range(500)]}},
    # nulls inside groups
    {"churn": {"days": None}},
    {"churn": {"warning_days": [None]}},
    {"approval": {"tiers": None}},
    {"approval": {"tiers": [None]}},
    {"reminders": {"quiet_hours": None}},
    # unknown groups and fields
    {"nope": {"days": 1}},
    {"churn": {"dayz": 1}},
    {"approval": {"tiers": [{"max_fen": None, "steps": [{"type": "manager", "extra": 1}]}]}},
    {"churn": {"days_by_level": {"Z": 30}}},
    {"pool": {"claim_daily_limit": 1}},  # a team field, not a setting
    # type confusion and bounds
    {"churn": {"days": "30"}},
    {"churn": {"days": True}},
    {"churn": {"days": 1e300}},
    {"churn": {"days": 2**70}},
    {"churn": {"days": 0}},
    {"churn": []},
    {"churn": "reset"},
    {"rfm": {"recency_days": [1, 2, 3]}},
    {"reminders": {"quiet_hours": "21:00-08:00,09:00-10:00"}},
    {"business_hours": {"holidays": ["9999-12-31"]}},
    {"approval": {"tiers": []}},
    {"approval": {"tiers": [{"max_fen": -1, "steps": [{"type": "manager"}]}, {"max_fen": None, "steps": [{"type": "admin"}]}]}},
    {"approval": {"tiers": [{"max_fen": None, "steps": [{"type": "root"}]}]}},
]


@pytest.mark.gen_test(timeout=60)
async def test_hostile_settings_bodies_are_422_and_write_nothing(api, people, raw_db):
    admin = await people.admin()
    team = await people.team()
    before = raw_db.teams.find_one({"_id": ObjectId(team)})
    for probe in PROBES:
        r = await api.patch(f"{TEAMS}/{team}/settings", json={"version": 1, **probe}, token=admin.token)
        assert r.status == 422, (probe, r.status, r.body[:300])
        assert r.json["error"]["details"], probe
    assert raw_db.teams.find_one({"_id": ObjectId(team)}) == before
    assert raw_db.audit_log.count_documents({"action": "team.settings"}) == 0


@pytest.mark.gen_test
async def test_only_admins_write_and_only_admins_or_the_teams_manager_read(api, people, wechat, raw_db):
    state, _ = wechat
    manager, rep = await people.manager(), await people.rep()
    customer = await people.customer(state)
    other = await people.team("华南销售部")
    own = manager.team_id
    cases = [
        (None, "GET", own, 401), (None, "PATCH", own, 401),
        (customer, "GET", own, 403), (customer, "PATCH", own, 403),
        (rep, "GET", own, 403), (rep, "PATCH", own, 403),
        (manager, "PATCH", own, 403), (manager, "GET", other, 404), (manager, "PATCH", other, 403),
    ]
    for person, method, team, status in cases:
        r = await api.request(method, f"{TEAMS}/{team}/settings", json_body={"version": 1, "churn": {"days": 10, "warning_days": [5]}} if method == "PATCH" else None,
                              token=person.token if person else None)
        assert r.status == status, (person and person.user["role"], method, r.body)
    for team in (own, other):
        assert "settings" not in raw_db.teams.find_one({"_id": ObjectId(team)})
    admin = await people.admin()
    for bad_id in ("not-an-id", "0" * 24, "$where"):
        r = await api.get(f"{TEAMS}/{bad_id}/settings", token=admin.token)
        assert (r.status, r.error_code) == (404, "team.not_found"), bad_id
