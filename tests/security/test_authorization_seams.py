"""Authorization at the seams (OWASP API1): a create that collides with an existing id, and an
approver who no longer holds the step's role in the contract's team.

Approval rule (docs/features.md, "Contracts"): a pending step is decided by whoever holds the step's role in
the contract's team *now*; a manager moved to another team loses the old team's pending contracts
at once (404 to read, 404 to approve, gone from the inbox), and the team's new manager gets them.
"""

from __future__ import annotations

import pytest

from leads_kit import LEADS, make_lead, new_uuid

CONTRACTS = "/api/v1/contracts"
INBOX = "/api/v1/approvals?status=pending"
LEAD_FIELDS = {"name", "phone_masked", "owner_id", "team_id", "notes", "stage"}


def leaks_nothing(response) -> None:
    assert response.status == 409 and response.error_code == "lead.id_taken", response.body
    body = response.json
    assert set(body) == {"error"}, body
    assert not LEAD_FIELDS & set(body["error"]), body


# ---------------------------------------------------------------- a create that collides
@pytest.mark.gen_test
async def test_retrying_a_create_after_the_lead_was_reassigned_returns_nothing_of_it(api, people):
    rep, other, manager = await people.rep(), await people.rep(), await people.manager()
    lead_id = new_uuid()
    first = await make_lead(api, rep, id=lead_id, name="秘密客户", notes="预算 80 万")
    assert first["id"] == lead_id
    # the same request again, while the lead is still the rep's, is a harmless retry
    r = await api.post(LEADS, json={"id": lead_id, "name": "秘密客户"}, token=rep.token)
    assert r.status == 201 and r.json["id"] == lead_id
    r = await api.post(f"{LEADS}/{lead_id}/assign", json={"owner_id": other.id, "reason": "换人跟进"}, token=manager.token)
    assert r.status == 200, r.body
    r = await api.post(LEADS, json={"id": lead_id, "name": "秘密客户"}, token=rep.token)
    leaks_nothing(r)
    assert "秘密客户" not in r.body.decode() and "80" not in r.body.decode()
    r = await api.get(f"{LEADS}/{lead_id}", token=other.token)
    assert r.status == 200 and r.json["owner_id"] == other.id and r.json["name"] == "秘密客户"


@pytest.mark.gen_test
async def test_a_manager_retrying_a_create_after_the_lead_moved_team_gets_409(api, people, raw_db):
    manager = await people.manager()
    far_team = await people.team("华南销售部")
    lead_id = new_uuid()
    await make_lead(api, manager, id=lead_id, name="转走的客户")
    raw_db.leads.update_one({"_id": lead_id}, {"$set": {"team_id": far_team, "owner_id": None}})  # setup: moved to another team
    r = await api.post(LEADS, json={"id": lead_id, "name": "转走的客户"}, token=manager.token)
    leaks_nothing(r)
    assert raw_db.leads.find_one({"_id": lead_id})["team_id"] == far_team


@pytest.mark.gen_test
async def test_someone_elses_id_is_taken_not_shown(api, people):
    rep, other = await people.rep(), await people.rep()
    lead_id = new_uuid()
    await make_lead(api, other, id=lead_id, name="别人的客户")
    leaks_nothing(await api.post(LEADS, json={"id": lead_id, "name": "我的"}, token=rep.token))


# ---------------------------------------------------------------- approvers now, not at submit time
async def pending(api, rep, amount: int = 5_000_000) -> dict:
    lead = await make_lead(api, rep)
    body = {"lead_id": lead["id"], "title": "年度服务合同", "amount_fen": amount, "start_date": "2027-01-01", "end_date": "2027-12-31"}
    r = await api.post(CONTRACTS, json=body, token=rep.token)
    assert r.status == 201, r.body
    r = await api.post(f"{CONTRACTS}/{r.json['id']}/submit", json={"version": r.json["version"]}, token=rep.token)
    assert r.status == 200 and r.json["status"] == "pending", r.body
    return r.json


async def move(api, admin, person, team_id: str) -> None:
    r = await api.get(f"/api/v1/users/{person.id}", token=admin.token)
    r = await api.patch(f"/api/v1/users/{person.id}", json={"team_id": team_id, "version": r.json["version"]}, token=admin.token)
    assert r.status == 200, r.body


async def inbox_ids(api, person) -> list[str]:
    r = await api.get(INBOX, token=person.token)
    assert r.status == 200, r.body
    return [i["contract_id"] for i in r.json["items"]]


@pytest.mark.gen_test
async def test_a_manager_moved_to_another_team_loses_the_old_teams_pending_contracts(api, people, ctx):
    admin = await people.admin()
    rep, old_manager = await people.rep(), await people.manager()
    c = await pending(api, rep)
    assert c["current_approvers"] == [old_manager.id]
    assert await inbox_ids(api, old_manager) == [c["id"]]

    await move(api, admin, old_manager, await people.team("华南销售部"))
    moved = await people.login(await ctx.users.by_id(old_manager.id))  # a fresh token: the old one was revoked by the move
    assert await inbox_ids(api, moved) == []
    r = await api.get(f"{CONTRACTS}/{c['id']}", token=moved.token)
    assert r.status == 404, r.body
    r = await api.post(f"{CONTRACTS}/{c['id']}/approve", json={"version": c["version"], "comment": "我批"}, token=moved.token)
    assert r.status in (403, 404), r.body
    r = await api.get(f"{CONTRACTS}/{c['id']}", token=rep.token)
    assert r.json["status"] == "pending" and r.json["steps"][0]["decisions"] == []


@pytest.mark.gen_test
async def test_the_teams_new_manager_decides_a_step_that_waited_for_the_old_one(api, people, ctx):
    admin = await people.admin()
    rep, old_manager = await people.rep(), await people.manager()
    c = await pending(api, rep)
    await move(api, admin, old_manager, await people.team("华南销售部"))
    new_manager = await people.manager()  # appointed after the submission
    assert await inbox_ids(api, new_manager) == [c["id"]]
    r = await api.get(f"{CONTRACTS}/{c['id']}", token=new_manager.token)
    assert r.status == 200
    r = await api.post(f"{CONTRACTS}/{c['id']}/approve", json={"version": c["version"], "comment": "同意"}, token=new_manager.token)
    assert r.status == 200 and r.json["status"] == "active", r.body
    assert r.json["steps"][0]["decisions"][0]["user_id"] == new_manager.id
    assert await inbox_ids(api, new_manager) == []


@pytest.mark.gen_test
async def test_a_manager_demoted_to_rep_cannot_approve_and_an_admin_step_follows_the_admins_now(api, people, ctx):
    admin = await people.admin()
    rep, manager = await people.rep(), await people.manager()
    c = await pending(api, rep, amount=20_000_000)  # manager, then an admin
    r = await api.post(f"{CONTRACTS}/{c['id']}/approve", json={"version": c["version"], "comment": "同意"}, token=manager.token)
    assert r.status == 200 and r.json["current_step"] == 1 and r.json["current_approvers"] == [admin.id]
    second_admin = await people.admin()  # made an admin after the step started
    assert await inbox_ids(api, second_admin) == [c["id"]]
    # the first admin leaves the admins: the step is no longer theirs
    doc = await ctx.users.by_id(admin.id)
    r = await api.patch(f"/api/v1/users/{admin.id}", json={"role": "manager", "team_id": rep.team_id, "version": doc["version"]}, token=second_admin.token)
    assert r.status == 200, r.body
    former = await people.login(await ctx.users.by_id(admin.id))
    assert await inbox_ids(api, former) == []
    version = (await api.get(f"{CONTRACTS}/{c['id']}", token=second_admin.token)).json["version"]
    r = await api.post(f"{CONTRACTS}/{c['id']}/approve", json={"version": version, "comment": "我批"}, token=former.token)
    assert r.status == 403 and r.error_code == "contract.not_your_step", r.body
    r = await api.post(f"{CONTRACTS}/{c['id']}/approve", json={"version": version, "comment": "同意"}, token=second_admin.token)
    assert r.status == 200 and r.json["status"] == "active", r.body


@pytest.mark.gen_test
async def test_a_contract_pending_from_before_the_rule_stays_with_its_named_approvers(api, people, ctx, raw_db):
    """A contract submitted by an older build has no ``current_role``; after the start-up upgrade
    it is back in the inbox of the approver it named, and that approver can decide it."""
    from server.__main__ import upgrade_data

    rep, manager = await people.rep(), await people.manager()
    c = await pending(api, rep)
    raw_db.contracts.update_one({"_id": c["id"]}, {"$unset": {"current_role": ""}})  # as the older build wrote it
    assert await inbox_ids(api, manager) == []
    await upgrade_data(ctx)
    await upgrade_data(ctx)  # a second start-up changes nothing
    assert await inbox_ids(api, manager) == [c["id"]]
    r = await api.post(f"{CONTRACTS}/{c['id']}/approve", json={"version": c["version"], "comment": "同意"}, token=manager.token)
    assert r.status == 200 and r.json["status"] == "active", r.body
