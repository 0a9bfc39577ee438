"""10,000 leads in one hand-over: one job, batch by batch, stopped after one batch (as a crashed
process would stop), then continued by the ``handover`` job exactly; two schedulers at once move
nothing twice."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from allocation_kit import ADMIN
from jobs.registry import load_jobs, run_job
from server.actor import Actor
from server.schemas.handover import HandoverIn
from server.services.handover import BATCH
from server.services.leads import new_lead_id
from server.services.users import OwnerTally

N = 10_000


async def _seed(ctx, rep, n: int) -> None:
    """Leads owned by ``rep`` in bulk through the lead service, and the rep's open-lead count."""
    now = ctx.clock.now()
    docs = [{"_id": new_lead_id(), "name": f"客户{i}", "stage": "new", "owner_id": rep.id, "team_id": rep.team_id, "tags": [], "pool": False,
             "awaiting_allocation": False, "version": 1, "created_at": now, "updated_at": now, "touched_at": now, "created_by": rep.id} for i in range(n)]
    for i in range(0, n, 500):
        await ctx.leads.insert_imported(docs[i:i + 500])
    await ctx.users.record_lead_changes({rep.id: OwnerTally(open_leads=n)}, now)


@pytest.mark.gen_test(timeout=120)
async def test_ten_thousand_leads_one_hand_over_resumed_after_a_stop_exactly_once(people, ctx, raw_db):
    load_jobs()
    rep, heir = await people.rep(), await people.rep()
    await _seed(ctx, rep, N)
    manager = await people.manager()
    actor = Actor(id=manager.id, role="manager", team_id=manager.team_id, name="经理")
    doc = await ctx.handover.start(actor, rep.id, HandoverIn(to_user_id=heir.id, include=["leads"]), background=False)
    assert doc["progress"]["leads"] == {"total": N, "done": 0}

    # The process works one batch, then stops (crash): the hand-over stays running with its progress.
    assert await ctx.handover.run(doc["_id"], doc["worker"], max_batches=1) == "running"
    saved = raw_db.handovers.find_one({"_id": doc["_id"]})
    assert saved["status"] == "running" and saved["progress"]["leads"] == {"total": N, "done": BATCH}
    assert raw_db.leads.count_documents({"owner_id": heir.id}) == BATCH

    # Not stale yet: the job leaves it to its worker.
    assert (await run_job(ctx, "handover"))["resumed"] == 0
    # Later, two schedulers at once: one lease, one worker, each lead moved once.
    later = ctx.clock.now() + timedelta(minutes=5)
    first, second = await asyncio.gather(
        run_job(ctx, "handover", later, leases=ctx.lease_service("scheduler-a")),
        run_job(ctx, "handover", later, leases=ctx.lease_service("scheduler-b")),
    )
    assert sorted([first.get("finished", 0), second.get("finished", 0)]) == [0, 1], (first, second)

    done = raw_db.handovers.find_one({"_id": doc["_id"]})
    assert done["status"] == "done" and done["progress"]["leads"] == {"total": N, "done": N}
    assert "running_for" not in done
    assert raw_db.leads.count_documents({"owner_id": rep.id}) == 0
    assert raw_db.leads.count_documents({"owner_id": heir.id}) == N
    assert raw_db.leads.count_documents({"handover_pending": {"$exists": True}}) == 0
    assert raw_db.lead_events.count_documents({"kind": "assigned", "data.handover_id": str(doc["_id"])}) == N
    assert raw_db.users.find_one({"_id": rep.user["_id"]})["open_leads"] == 0
    assert raw_db.users.find_one({"_id": heir.user["_id"]})["open_leads"] == N


@pytest.mark.gen_test(timeout=60)
async def test_a_batch_cut_short_after_its_move_is_finished_once(people, ctx, raw_db):
    """The process recorded its batch and moved the leads, then died before their events and
    counts: the job runs the batch again, writes them once and counts the leads once."""
    load_jobs()
    rep, heir = await people.rep(), await people.rep()
    await _seed(ctx, rep, 30)
    doc = await ctx.handover.start(ADMIN, rep.id, HandoverIn(to_user_id=heir.id, include=["leads"]), background=False)
    handover_id = str(doc["_id"])
    ids = await ctx.leads.owned_ids(rep.id, 10)
    # What the dead process wrote: the batch on the hand-over, then the move of its leads.
    raw_db.handovers.update_one({"_id": doc["_id"]}, {"$set": {"batch": {"seq": 1, "ids": ids, "owner_id": heir.id}}})
    change = {"owner_id": heir.id, "rule_id": None, "strategy": "handover", "reason": doc["reason"], "at": ctx.clock.now(), "handover_id": handover_id}
    await ctx.leads._store.hand_over_many(ids, rep.id, heir.id, change)
    result = await run_job(ctx, "handover", ctx.clock.now() + timedelta(minutes=5))
    assert result["finished"] == 1, result
    assert raw_db.lead_events.count_documents({"kind": "assigned", "data.handover_id": handover_id}) == 30
    assert raw_db.users.find_one({"_id": heir.user["_id"]})["open_leads"] == 30
    assert raw_db.users.find_one({"_id": rep.user["_id"]})["open_leads"] == 0
    assert raw_db.handovers.find_one({"_id": doc["_id"]})["progress"]["leads"] == {"total": 30, "done": 30}
