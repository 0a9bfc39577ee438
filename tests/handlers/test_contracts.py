"""Contracts from the phone: drafts, approval chains and decisions, the approval inbox, renewals
and payments (回款)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from leads_kit import LEADS, make_lead

CONTRACTS = "/api/v1/contracts"
INBOX = "/api/v1/approvals?status=pending"
SMALL = 5_000_000  # 50,000 yuan: the manager alone
LARGE = 20_000_000  # 200,000 yuan: the manager, then an admin
HUGE = 60_000_000  # above 500,000 yuan: countersigned by the CFO and legal (configured below)


@pytest.fixture
def settings_overrides() -> dict:
    return {
        "approval_thresholds": [
            {"max_fen": 10_000_000, "steps": [{"type": "manager"}]},
            {"max_fen": 50_000_000, "steps": [{"type": "manager"}, {"type": "admin"}]},
            {"max_fen": None, "steps": [{"type": "manager"}, {"type": "all_of", "users": ["cfo", "legal"]}]},
        ],
    }


def body(lead_id: str, amount: int = SMALL, **extra) -> dict:
    return {"lead_id": lead_id, "title": "年度服务合同", "amount_fen": amount, "start_date": "2027-01-01", "end_date": "2027-12-31", **extra}


async def draft(api, person, amount: int = SMALL, lead: dict | None = None, **extra) -> dict:
    lead = lead or await make_lead(api, person, name=f"客户{uuid.uuid4().hex[:6]}")
    r = await api.post(CONTRACTS, json=body(lead["id"], amount, **extra), token=person.token)
    assert r.status == 201, r.body
    return r.json


async def submitted(api, person, amount: int = SMALL, **extra) -> dict:
    c = await draft(api, person, amount, **extra)
    r = await api.post(f"{CONTRACTS}/{c['id']}/submit", json={"version": c["version"]}, token=person.token)
    assert r.status == 200, r.body
    return r.json


async def decide(api, person, contract: dict, decision: str = "approve", comment: str = "", version: int | None = None):
    return await api.post(f"{CONTRACTS}/{contract['id']}/{decision}", json={"version": version or contract["version"], "comment": comment}, token=person.token)


async def active(api, rep, manager, amount: int = SMALL, **extra) -> dict:
    c = await submitted(api, rep, amount, **extra)
    r = await decide(api, manager, c)
    assert r.status == 200, r.body
    assert r.json["status"] == "active"
    return r.json


def notes(raw_db, user_id: str, kind: str) -> list[dict]:
    return list(raw_db.notifications.find({"user_id": user_id, "kind": kind}))


# ---------------------------------------------------------------- drafts
@pytest.mark.gen_test
async def test_bad_amounts_dates_plans_and_leads_are_refused_and_nothing_is_created(api, people, raw_db):
    rep, other = await people.rep(), await people.rep()
    lead = await make_lead(api, rep)
    theirs = await make_lead(api, other)
    cases = [
        (body(lead["id"], 0), 422), (body(lead["id"], -100), 422), (body(lead["id"], 1.5), 422),
        (body(lead["id"], "100"), 422), (body(lead["id"], 10_000_000_001), 422), (body(lead["id"], True), 422),
        (body(lead["id"], start_date="2027-02-01", end_date="2027-01-31"), 422),
        (body(lead["id"], payment_plan=[{"due_date": "2027-01-01", "amount_fen": 1_000_000}]), 422),
        (body(lead["id"], payment_plan=[{"due_date": "2027-01-01", "amount_fen": 2_500_000.0}, {"due_date": "2027-06-01", "amount_fen": 2_500_000}]), 422),
        (body(lead["id"], status="active"), 422),
        (body(theirs["id"]), 404),
        (body("0" * 24), 404),
    ]
    for payload, status in cases:
        r = await api.post(CONTRACTS, json=payload, token=rep.token)
        assert r.status == status, (payload, r.body)
    r = await api.post(CONTRACTS, json=body(lead["id"], payment_plan=[{"due_date": "2027-01-01", "amount_fen": 1}]), token=rep.token)
    assert r.error_code == "contract.plan_mismatch"
    r = await api.post(CONTRACTS, json=body(lead["id"], 10_000_000_001), token=rep.token)
    assert r.error_code == "contract.amount_too_large"
    assert raw_db.contracts.count_documents({}) == 0


@pytest.mark.gen_test
async def test_draft_is_scoped_editable_only_as_draft_and_listed(api, people):
    team2 = await people.team("华南销售部")
    assert team2
    rep, other, manager, far_manager = await people.rep(), await people.rep(), await people.manager(), await people.manager(team="华南销售部")
    c = await draft(api, rep, payment_plan=[{"due_date": "2027-06-01", "amount_fen": 3_000_000}, {"due_date": "2027-01-01", "amount_fen": 2_000_000}])
    assert c["status"] == "draft" and c["owner_id"] == rep.id and c["team_id"] == rep.team_id
    assert [i["due_date"] for i in c["payment_plan"]] == ["2027-01-01", "2027-06-01"]  # oldest first
    for who, status in ((rep, 200), (manager, 200), (other, 404), (far_manager, 404)):
        r = await api.get(f"{CONTRACTS}/{c['id']}", token=who.token)
        assert r.status == status, r.body
    r = await api.patch(f"{CONTRACTS}/{c['id']}", json={"title": "改", "version": 1}, token=other.token)
    assert r.status == 404
    r = await api.patch(f"{CONTRACTS}/{c['id']}", json={"amount_fen": 6_000_000, "version": 1}, token=rep.token)
    assert r.status == 422 and r.json["error"]["code"] == "contract.plan_mismatch"
    r = await api.patch(f"{CONTRACTS}/{c['id']}", json={"title": "三年服务合同", "version": 1}, token=rep.token)
    assert r.status == 200 and r.json["version"] == 2 and r.json["title"] == "三年服务合同"
    r = await api.patch(f"{CONTRACTS}/{c['id']}", json={"title": "旧版本", "version": 1}, token=rep.token)
    assert r.status == 412
    r = await api.get(f"{CONTRACTS}?status=draft", token=rep.token)
    assert [x["id"] for x in r.json["items"]] == [c["id"]]
    assert (await api.get(f"{CONTRACTS}?status=draft", token=other.token)).json["items"] == []
    r = await api.get(f"{CONTRACTS}?lead_id={c['lead_id']}", token=manager.token)
    assert [x["id"] for x in r.json["items"]] == [c["id"]]
    r = await api.post(f"{CONTRACTS}/{c['id']}/submit", json={"version": 2}, token=rep.token)
    assert r.status == 200 and r.json["status"] == "pending"
    r = await api.patch(f"{CONTRACTS}/{c['id']}", json={"title": "晚了", "version": r.json["version"]}, token=rep.token)
    assert r.status == 409 and r.error_code == "contract.not_draft"


# ---------------------------------------------------------------- approvals
@pytest.mark.gen_test
async def test_the_approval_tiers_are_the_contracts_teams(api, people):
    """Team 华南 wants an admin's approval above 10,000 yuan (PATCH /teams/{id}/settings); team 华北
    keeps the environment's tiers (the manager alone up to 100,000 yuan)."""
    admin = await people.admin()
    n_rep, n_manager = await people.rep(), await people.manager()
    s_rep, s_manager = await people.rep(team="华南销售部"), await people.manager(team="华南销售部")
    tiers = [{"max_fen": 1_000_000, "steps": [{"type": "manager"}]}, {"max_fen": None, "steps": [{"type": "manager"}, {"type": "admin"}]}]
    r = await api.patch(f"/api/v1/teams/{s_rep.team_id}/settings", json={"version": 1, "approval": {"tiers": tiers}}, token=admin.token)
    assert r.status == 200, r.body
    north, south = await submitted(api, n_rep, SMALL), await submitted(api, s_rep, SMALL)
    assert [s["type"] for s in north["steps"]] == ["manager"] and north["current_approvers"] == [n_manager.id]
    assert [s["type"] for s in south["steps"]] == ["manager", "admin"] and south["current_approvers"] == [s_manager.id]
    r = await decide(api, s_manager, south)
    assert r.status == 200 and r.json["status"] == "pending" and r.json["current_approvers"] == [admin.id]
    assert (await decide(api, n_manager, north)).json["status"] == "active"


@pytest.mark.gen_test
async def test_small_contract_manager_approves_and_lead_becomes_customer(api, people, raw_db):
    rep, manager = await people.rep(), await people.manager()
    c = await submitted(api, rep)
    assert [s["type"] for s in c["steps"]] == ["manager"] and c["current_approvers"] == [manager.id]
    pending = notes(raw_db, manager.id, "approval_pending")
    assert len(pending) == 1 and pending[0]["dedupe_key"] == f"approval:{c['id']}:1.0:{manager.id}"
    r = await decide(api, manager, c, comment="同意")
    assert r.status == 200, r.body
    assert r.json["status"] == "active" and r.json["steps"][0]["state"] == "approved"
    assert r.json["steps"][0]["decisions"][0]["comment"] == "同意"
    lead = (await api.get(f"{LEADS}/{c['lead_id']}", token=rep.token)).json
    assert lead["stage"] == "customer"  # walked new → contacted → qualified → customer
    kinds = [e["kind"] for e in (await api.get(f"{LEADS}/{c['lead_id']}/timeline?limit=50", token=rep.token)).json["items"]]
    assert {"contract_created", "contract_submitted", "contract_approved"} <= set(kinds)
    assert kinds.count("stage_changed") == 3
    assert len(notes(raw_db, rep.id, "approval_decided")) == 1
    assert raw_db.audit_log.count_documents({"action": "contract.approve", "target_id": c["id"]}) == 1
    r = await decide(api, manager, r.json)  # already active
    assert r.status == 409 and r.error_code == "contract.not_pending"


@pytest.mark.gen_test
async def test_inbox_and_approve_budgets_with_a_two_step_chain(api, people, recorder, raw_db):
    rep, manager, admin = await people.rep(), await people.manager(), await people.admin()
    made = [await submitted(api, rep, LARGE) for _ in range(4)]
    with recorder.counting() as cmds:
        r = await api.get(INBOX, token=manager.token)
    assert r.status == 200, r.body
    assert len(cmds) <= 3, cmds
    assert {i["contract_id"] for i in r.json["items"]} == {c["id"] for c in made}
    item = r.json["items"][0]
    assert item["lead_name"].startswith("客户") and item["amount_fen"] == LARGE and item["step"] == 0
    assert item["steps_total"] == 2 and item["submitter_name"] == "rep user" and item["waiting_since"]
    assert (await api.get(INBOX, token=admin.token)).json["items"] == []  # not their step yet

    c = made[0]
    with recorder.counting() as cmds:
        r = await decide(api, manager, c)
    assert r.status == 200, r.body
    # One over the five first planned for an approval, on purpose: the per-request user read keeps the rule that a
    # deactivated approver is locked out at once (auth 1, contract 1, write 1, audit 1, event 1, notify 1).
    assert len(cmds) <= 6, cmds
    assert r.json["status"] == "pending" and r.json["current_step"] == 1 and r.json["current_approvers"] == [admin.id]
    assert len(notes(raw_db, admin.id, "approval_pending")) == 1
    assert [i["contract_id"] for i in (await api.get(INBOX, token=admin.token)).json["items"]] == [c["id"]]
    assert len((await api.get(INBOX, token=manager.token)).json["items"]) == 3
    r = await decide(api, admin, r.json)
    assert r.status == 200 and r.json["status"] == "active"
    assert len(notes(raw_db, rep.id, "approval_decided")) == 2  # every decision tells the submitter


@pytest.mark.gen_test
async def test_two_managers_approving_at_once_one_wins(api, people, raw_db):
    rep, m1, m2 = await people.rep(), await people.manager(), await people.manager()
    await people.admin()
    c = await submitted(api, rep, LARGE)
    assert sorted(c["current_approvers"]) == sorted([m1.id, m2.id])
    r1, r2 = await asyncio.gather(decide(api, m1, c), decide(api, m2, c))
    assert sorted([r1.status, r2.status]) == [200, 412], (r1.body, r2.body)
    assert raw_db.audit_log.count_documents({"action": "contract.approve", "target_id": c["id"]}) == 1
    stored = raw_db.contracts.find_one({"_id": c["id"]})
    assert len(stored["steps"][0]["decisions"]) == 1 and stored["current_step"] == 1


@pytest.mark.gen_test
async def test_who_may_decide_and_when(api, people):
    rep, manager, admin = await people.rep(), await people.manager(), await people.admin()
    c = await draft(api, rep, LARGE)
    r = await decide(api, manager, c)
    assert r.status == 409  # a draft is not awaiting approval
    r = await api.post(f"{CONTRACTS}/{c['id']}/submit", json={"version": c["version"]}, token=rep.token)
    c = r.json
    assert (await decide(api, rep, c)).status == 403  # reps never approve
    r = await decide(api, admin, c)
    assert r.status == 403 and r.error_code == "contract.not_your_step"  # the admin is step 2
    r = await decide(api, manager, c, version=c["version"] - 1)
    assert r.status == 412
    r = await decide(api, manager, c, "reject")
    assert r.status == 422 and r.error_code == "contract.comment_required"
    r = await decide(api, manager, c, "reject", comment="价格过低")
    assert r.status == 200 and r.json["status"] == "rejected"
    rejected = r.json
    for who, seen in ((manager, c), (admin, rejected), (manager, rejected)):
        r = await decide(api, who, seen)
        assert r.status == 409 and r.error_code == "contract.not_pending", r.body


@pytest.mark.gen_test
async def test_return_sends_it_back_as_a_draft_with_the_comment(api, people, raw_db):
    rep, manager = await people.rep(), await people.manager()
    c = await submitted(api, rep)
    r = await decide(api, manager, c, "return", comment="请补充付款计划")
    assert r.status == 200 and r.json["status"] == "draft" and r.json["return_comment"] == "请补充付款计划"
    r = await api.patch(f"{CONTRACTS}/{c['id']}", json={"payment_plan": [{"due_date": "2027-01-15", "amount_fen": SMALL}], "version": r.json["version"]}, token=rep.token)
    assert r.status == 200, r.body
    r = await api.post(f"{CONTRACTS}/{c['id']}/submit", json={"version": r.json["version"]}, token=rep.token)
    assert r.status == 200 and r.json["status"] == "pending"
    assert len(notes(raw_db, manager.id, "approval_pending")) == 2  # told again for the new round
    kinds = [e["kind"] for e in (await api.get(f"{LEADS}/{c['lead_id']}/timeline?limit=50", token=rep.token)).json["items"]]
    assert "contract_returned" in kinds
    assert raw_db.audit_log.count_documents({"action": "contract.return", "target_id": c["id"]}) == 1


@pytest.mark.gen_test
async def test_countersign_needs_every_named_approver(api, people, raw_db):
    rep, manager = await people.rep(), await people.manager()
    cfo, legal = await people.admin(username="cfo"), await people.manager(team="法务部", username="legal")
    c = await submitted(api, rep, HUGE)
    assert [s["type"] for s in c["steps"]] == ["manager", "all_of"]
    c = (await decide(api, manager, c)).json
    assert sorted(c["current_approvers"]) == sorted([cfo.id, legal.id])
    r = await api.get(f"{CONTRACTS}/{c['id']}", token=legal.token)  # an approver from another team may read it
    assert r.status == 200 and r.json["payments"] is None  # but not the money
    r = await decide(api, cfo, c)
    assert r.status == 200 and r.json["status"] == "pending" and r.json["current_approvers"] == [legal.id]
    assert (await decide(api, cfo, r.json)).status == 403  # no second vote
    r = await decide(api, legal, r.json)
    assert r.status == 200 and r.json["status"] == "active"
    assert sorted(r.json["steps"][1]["approved_by"]) == sorted([cfo.id, legal.id])


@pytest.mark.gen_test
async def test_nobody_approves_their_own_contract(api, people):
    manager, admin = await people.manager(), await people.admin()
    c = await submitted(api, manager)  # the manager's own lead and contract
    assert manager.id not in c["current_approvers"] and c["current_approvers"] == [admin.id]
    assert "passed to the admins" in c["steps"][0]["note"]
    assert (await decide(api, manager, c)).status == 403
    r = await decide(api, admin, c)
    assert r.status == 200 and r.json["status"] == "active"


# ---------------------------------------------------------------- renewals
@pytest.mark.gen_test
async def test_renewal_is_a_linked_draft_and_makes_the_lead_retained(api, people):
    rep, manager = await people.rep(), await people.manager()
    c = await active(api, rep, manager)
    r = await api.post(f"{CONTRACTS}/{c['id']}/renew", token=rep.token)
    assert r.status == 201, r.body
    renewal = r.json
    assert renewal["status"] == "draft" and renewal["renews"] == c["id"]
    assert renewal["start_date"] == "2028-01-01" and renewal["end_date"] == "2028-12-31"
    r = await api.post(f"{CONTRACTS}/{c['id']}/renew", token=rep.token, headers={"Accept-Language": "en"})
    assert r.error_code == "contract.already_renewed"
    assert r.json["error"]["details"] == [{"field": "renewed_by", "code": "exists", "message": f"renewed by {renewal['id']}", "value": renewal["id"]}]
    assert (await api.get(f"{CONTRACTS}/{c['id']}", token=rep.token)).json["renewed_by"] == renewal["id"]
    r = await api.post(f"{CONTRACTS}/{renewal['id']}/renew", token=rep.token)
    assert r.status == 409  # a draft cannot be renewed
    r = await api.post(f"{CONTRACTS}/{renewal['id']}/submit", json={"version": renewal["version"]}, token=rep.token)
    r = await decide(api, manager, r.json)
    assert r.status == 200 and r.json["status"] == "active"
    lead = (await api.get(f"{LEADS}/{c['lead_id']}", token=rep.token)).json
    assert lead["stage"] == "retained"


# ---------------------------------------------------------------- payments
PLAN = [{"due_date": "2026-01-01", "amount_fen": 2_000_000}, {"due_date": "2026-06-01", "amount_fen": 2_000_000}, {"due_date": "2099-01-01", "amount_fen": 1_000_000}]


def pay(amount: int, ref: str = "银行流水 001") -> dict:
    return {"amount_fen": amount, "received_at": "2026-02-01T10:00:00+08:00", "method": "bank_transfer", "reference": ref}


@pytest.mark.gen_test
async def test_payments_allocate_to_the_oldest_instalment_and_show_balances(api, people, raw_db):
    rep, manager = await people.rep(), await people.manager()
    finance = await people.rep(team="财务部", finance=True)
    other = await people.rep()
    c = await active(api, rep, manager, payment_plan=PLAN, start_date="2025-12-01", end_date="2099-12-31")
    assert c["paid_fen"] == 0 and c["outstanding_fen"] == SMALL and c["overdue_fen"] == 4_000_000 and c["paid"] is False
    path = f"{CONTRACTS}/{c['id']}/payments"
    r = await api.post(path, json=pay(1_000_000), token=rep.token)
    assert r.status == 403 and r.error_code == "payment.forbidden"  # the owner sees, but does not record
    assert (await api.post(path, json=pay(1_000_000), token=other.token)).status == 404
    key = {"Idempotency-Key": f"pay-{uuid.uuid4().hex}"}
    r = await api.post(path, json=pay(2_500_000), token=manager.token, headers=key)
    assert r.status == 201, r.body
    assert r.json["allocations"] == [{"no": 1, "amount_fen": 2_000_000}, {"no": 2, "amount_fen": 500_000}]
    first = r.json
    again = await api.post(path, json=pay(2_500_000), token=manager.token, headers=key)
    assert again.status == 201 and again.json == first  # the first response; nothing recorded twice
    assert (await api.post(path, json=pay(999), token=manager.token, headers=key)).status == 422  # same key, other body
    stored = raw_db.contracts.find_one({"_id": c["id"]})
    assert len(stored["payments"]) == 1
    r = await api.post(path, json=pay(2_500_001), token=finance.token)
    assert r.status == 422 and r.error_code == "payment.over_balance"
    assert len(raw_db.contracts.find_one({"_id": c["id"]})["payments"]) == 1
    view = (await api.get(f"{CONTRACTS}/{c['id']}", token=rep.token)).json
    assert view["paid_fen"] == 2_500_000 and view["outstanding_fen"] == 2_500_000 and view["overdue_fen"] == 1_500_000
    assert [i["paid_fen"] for i in view["payment_plan"]] == [2_000_000, 500_000, 0]
    r = await api.post(path, json=pay(2_500_000, "尾款"), token=finance.token)
    assert r.status == 201 and r.json["paid"] is True
    view = (await api.get(f"{CONTRACTS}/{c['id']}", token=manager.token)).json
    assert view["paid"] is True and view["outstanding_fen"] == 0 and view["overdue_fen"] == 0 and len(view["payments"]) == 2
    assert raw_db.audit_log.count_documents({"action": "contract.payment", "target_id": c["id"]}) == 2


@pytest.mark.gen_test
async def test_payment_on_a_draft_or_bad_payment_is_refused(api, people, raw_db):
    rep, manager = await people.rep(), await people.manager()
    c = await draft(api, rep)
    path = f"{CONTRACTS}/{c['id']}/payments"
    r = await api.post(path, json=pay(100), token=manager.token, headers={"Idempotency-Key": f"pay-{uuid.uuid4().hex}"})
    assert r.status == 409 and r.error_code == "payment.contract_not_active"
    for bad in ({**pay(100), "amount_fen": 1.5}, {**pay(100), "amount_fen": 0}, {**pay(100), "received_at": "2026-02-01T10:00:00"},
                {**pay(100), "method": "bitcoin"}, {**pay(100), "received_at": "2999-01-01T00:00:00+08:00"}):
        assert (await api.post(path, json=bad, token=manager.token)).status in (409, 422), bad
    assert raw_db.contracts.find_one({"_id": c["id"]})["payments"] == []


@pytest.mark.gen_test
async def test_a_deactivated_approver_is_refused_at_once(api, people, raw_db):
    rep, manager, admin = await people.rep(), await people.manager(), await people.admin()
    c = await submitted(api, rep, LARGE)
    r = await api.patch(f"/api/v1/users/{manager.id}", json={"active": False, "version": manager.user["version"]}, token=admin.token)
    assert r.status == 200, r.body
    r = await decide(api, manager, c)
    assert r.status == 401 and r.error_code == "auth.invalid_token", r.body
    stored = raw_db.contracts.find_one({"_id": c["id"]})
    assert stored["current_step"] == 0 and raw_db.audit_log.count_documents({"action": "contract.approve"}) == 0
