"""Hand-over probes: a manager reaching another team's user or hand-over, reps and customers,
forged ids and operator keys. Each is refused and nothing is written."""

from __future__ import annotations

import pytest

from leads_kit import make_lead

USERS = "/api/v1/users"


def _nothing_written(raw_db, rep_id: str, leads: int) -> None:
    assert raw_db.handovers.count_documents({}) == 0
    assert raw_db.leads.count_documents({"owner_id": rep_id}) == leads


@pytest.mark.gen_test(timeout=60)
async def test_a_manager_cannot_reach_another_teams_user_or_hand_over(api, people, ctx, raw_db):
    admin, manager = await people.admin(), await people.manager()
    south_manager, south_rep = await people.manager(team="华南销售部"), await people.rep(team="华南销售部")
    rep = await people.rep()
    await make_lead(api, south_rep)
    for path in ("handover/preview", "handover"):
        # another team's user: not found, exactly like an id that does not exist
        r = await api.post(f"{USERS}/{south_rep.id}/{path}", json={"to_user_id": rep.id}, token=manager.token)
        assert (r.status, r.error_code) == (404, "user.not_found"), r.body
        # an admin's work is not a manager's to move
        r = await api.post(f"{USERS}/{admin.id}/{path}", json={"to_user_id": rep.id}, token=manager.token)
        assert (r.status, r.error_code) == (404, "user.not_found"), r.body
    _nothing_written(raw_db, south_rep.id, 1)
    # a hand-over of another team is not found either
    r = await api.post(f"{USERS}/{south_rep.id}/handover", json={"to_user_id": south_manager.id}, token=south_manager.token)
    assert r.status == 202, r.body
    await ctx.handover.wait_idle()
    r = await api.get(f"/api/v1/handovers/{r.json['id']}", token=manager.token)
    assert (r.status, r.error_code) == (404, "handover.not_found"), r.body


@pytest.mark.gen_test(timeout=60)
async def test_reps_and_customers_are_forbidden(api, people, wechat, raw_db):
    rep, other = await people.rep(), await people.rep()
    customer = await people.customer(wechat[0])
    await make_lead(api, rep)
    for who in (rep, other, customer):
        for path in ("handover/preview", "handover"):
            r = await api.post(f"{USERS}/{rep.id}/{path}", json={"to_user_id": other.id}, token=who.token)
            assert r.status == 403, r.body
        r = await api.get(f"/api/v1/handovers/{'0' * 24}", token=who.token)
        assert r.status == 403, r.body
    _nothing_written(raw_db, rep.id, 1)


@pytest.mark.gen_test(timeout=60)
async def test_forged_ids_and_operator_keys(api, people, raw_db):
    admin, rep, other = await people.admin(), await people.rep(), await people.rep()
    await make_lead(api, rep)
    for forged in ("not-an-id", "0" * 24, "%24ne", "6" * 25):
        r = await api.post(f"{USERS}/{forged}/handover", json={"to_user_id": other.id}, token=admin.token)
        assert (r.status, r.error_code) == (404, "user.not_found"), (forged, r.body)
        r = await api.get(f"/api/v1/handovers/{forged}", token=admin.token)
        assert (r.status, r.error_code) == (404, "handover.not_found"), (forged, r.body)
    bodies = [
        {"to_user_id": {"$ne": None}},
        {"to_user_id": other.id, "$where": "1"},
        {"to_user_id": other.id, "include": [{"$gt": ""}]},
        {"rule_id": {"$exists": True}},
        {"to_user_id": other.id, "status": "done"},
        {"to_user_id": other.id, "progress": {"leads": {"total": 0, "done": 0}}},
        {"to_user_id": other.id, "from_user_id": admin.id},
        {"to_user_id": f"{other.id[:-1]}Z"},
    ]
    for body in bodies:
        r = await api.post(f"{USERS}/{rep.id}/handover", json=body, token=admin.token)
        assert r.status == 422, (body, r.body)
        assert r.error_code in ("request.invalid", "request.operator_key"), r.body
    _nothing_written(raw_db, rep.id, 1)
