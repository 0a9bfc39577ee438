"""Contracts signed, money received and contracts ended before the revenue counters existed left no
``contract_signed`` / ``payment_recorded`` / ``contract_ended`` events: the start-up upgrade
(``upgrade_data``) writes them once, with their original times, so the fold counts them in the
revenue and retention reports; run again it writes nothing, and a rebuild equals the counters."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from jobs.registry import load_jobs, run_job
from leads_kit import make_lead
from money_kit import SHANGHAI, at_shanghai, dated, pay, sign
from server.__main__ import upgrade_data
from server.clock import FixedClock
from server.services.stats import MONEY_KINDS
from test_reports_money import FIELDS, q, recount_revenue

load_jobs()
REVENUE, RETENTION = "/api/v1/reports/revenue", "/api/v1/reports/retention"


@pytest.fixture
def clock():
    return FixedClock(datetime.now(timezone.utc).replace(microsecond=0))


async def before_the_counters(ctx, raw_db, now: datetime) -> None:
    """The database as a build without revenue counters left it: no money events, counters
    rebuilt from what is there (the events of that build)."""
    raw_db["lead_events"].delete_many({"kind": {"$in": list(MONEY_KINDS)}})
    raw_db["contracts"].update_many({}, {"$unset": {"money_events": ""}})
    await ctx.stats.rebuild(now)


def heads(raw_db) -> dict:
    return {d["_id"]: {k: v for k, v in d.items() if k != "seq"} for d in raw_db["stats_cum"].find({"_id": {"$regex": "^[^:]*:head$"}})}


@pytest.mark.gen_test(timeout=120)
async def test_old_contracts_and_payments_are_counted_after_the_upgrade_once(api, people, ctx, clock, raw_db):
    manager, rep, admin = await people.manager(), await people.rep(), await people.admin()
    bosses = (manager, admin)
    now = clock.now()
    today = now.astimezone(SHANGHAI).date()
    d0 = today - timedelta(days=60)

    def day(n: int) -> date:
        return today - timedelta(days=n)

    at = dated(clock)

    a, e = await make_lead(api, rep, name="甲"), await make_lead(api, rep, name="戊")
    ca = await at(day(50), lambda: sign(api, rep, bosses, a, 5_000_000, day(50), plan=[(day(50), 3_000_000), (day(20), 2_000_000)]))
    await at(day(45), lambda: pay(api, manager, ca, 3_000_000, at_shanghai(day(46))))
    await at(day(40), lambda: sign(api, rep, bosses, a, 1_000_000, day(40)))  # a repurchase
    ce = await at(day(400), lambda: sign(api, rep, bosses, e, 3_000_000, day(400), day(10)))
    await at(day(30), lambda: sign(api, rep, bosses, e, 0, day(9), renew_of=ce))  # renewed (for the same amount) before it ends
    await run_job(ctx, "end_contracts", now)
    await before_the_counters(ctx, raw_db, now)

    r = await api.get(REVENUE + q(d0, today, group_by="rep"), token=manager.token)
    assert r.status == 200 and r.json["totals"]["signed_fen"] == 0 and r.json["totals"]["collected_fen"] == 0, "missing before the upgrade"

    await upgrade_data(ctx)
    await run_job(ctx, "fold_stats", now)
    await run_job(ctx, "count_money", now)

    truth = recount_revenue(raw_db, manager.team_id, d0, today, "rep", today)
    r = await api.get(REVENUE + q(d0, today, group_by="rep"), token=manager.token)
    assert r.status == 200, r.body
    assert {k: r.json["totals"][k] for k in FIELDS} == truth["totals"]
    assert r.json["totals"]["signed_fen"] == 9_000_000 and r.json["totals"]["collected_fen"] == 3_000_000
    assert (r.json["totals"]["new_count"], r.json["totals"]["repurchase_count"], r.json["totals"]["renewal_count"]) == (1, 1, 1)
    r = await api.get(RETENTION + q(d0, today), token=manager.token)
    assert r.status == 200 and (r.json["contracts_ending"], r.json["renewed"]) == (1, 1), r.body
    signed = raw_db["lead_events"].find_one({"kind": "contract_signed", "data.contract_id": ca["id"]})
    assert signed["at"].replace(tzinfo=timezone.utc) == raw_db["contracts"].find_one({"_id": ca["id"]})["activated_at"].replace(tzinfo=timezone.utc), "the original time"

    events, counted = raw_db["lead_events"].count_documents({}), heads(raw_db)
    await upgrade_data(ctx)  # the next start-up
    assert raw_db["lead_events"].count_documents({}) == events and raw_db["lead_events"].count_documents({"fold": None}) == 0
    raw_db["contracts"].update_many({}, {"$unset": {"money_events": ""}})  # even with every contract to look at again
    await upgrade_data(ctx)
    assert raw_db["lead_events"].count_documents({}) == events, "nothing written twice"
    await run_job(ctx, "fold_stats", now)
    assert heads(raw_db) == counted

    await ctx.stats.rebuild(now)
    assert heads(raw_db) == counted, "the rebuild equals the incremental counters"
