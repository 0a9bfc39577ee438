"""Lost and churn reasons in the funnel and lifecycle reports: counts and shares per code of the
team's catalogue for the period, labels in the caller's language, counted by the fold and equal
after a rebuild."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from jobs.registry import load_jobs, run_job
from leads_kit import LEADS, make_lead
from server.clock import FixedClock

load_jobs()
FUNNEL, LIFECYCLE = "/api/v1/reports/funnel", "/api/v1/reports/lifecycle"


@pytest.fixture
def clock():
    return FixedClock(datetime.now(timezone.utc).replace(microsecond=0))


async def move(api, person, lead_id: str, to: str, **body):
    r = await api.get(f"{LEADS}/{lead_id}", token=person.token)
    r = await api.post(f"{LEADS}/{lead_id}/stage", json={"to": to, "version": r.json["version"], **body}, token=person.token)
    assert r.status == 200, r.body


@pytest.mark.gen_test(timeout=60)
async def test_reason_counts_and_shares_for_the_period_equal_after_a_rebuild(api, people, ctx, clock):
    rep, manager = await people.rep(), await people.manager()
    for code in ("price", "price", "competitor"):
        await move(api, rep, (await make_lead(api, rep))["id"], "lost", reason_code=code)
    await move(api, rep, (await make_lead(api, rep))["id"], "lost", reason="老客户介绍的别家")  # an old client: other
    customer = await make_lead(api, rep)
    for to in ("contacted", "qualified", "customer", "at_risk"):
        await move(api, rep, customer["id"], to)
    await move(api, rep, customer["id"], "churned", reason_code="service")
    assert "skipped" not in await run_job(ctx, "fold_stats", clock.now())

    day = clock.now().astimezone(ZoneInfo("Asia/Shanghai")).date()
    q = f"?from={day.isoformat()}&to={day.isoformat()}"
    r = await api.get(FUNNEL + q, token=manager.token)
    assert r.status == 200, r.body
    rows = {x["code"]: x for x in r.json["lost_reasons"]}
    assert [x["code"] for x in r.json["lost_reasons"]][:3] == ["price", "competitor", "other"]  # most first
    assert {c: (x["count"], x["share"]) for c, x in rows.items()} == {
        "price": (2, 0.5), "competitor": (1, 0.25), "other": (1, 0.25), "no_need": (0, 0.0), "unreachable": (0, 0.0)}
    assert rows["price"]["label"] == "价格太高"
    en = await api.get(FUNNEL + q, token=manager.token, headers={"Accept-Language": "en"})
    assert {x["code"]: x["label"] for x in en.json["lost_reasons"]}["price"] == "Price too high"
    r = await api.get(LIFECYCLE + q, token=manager.token)
    churn = {x["code"]: (x["count"], x["share"]) for x in r.json["churn_reasons"]}
    assert churn["service"] == (1, 1.0) and sum(n for n, _ in churn.values()) == r.json["churned"] == 1

    # another day has none: shares are null, not a division by zero
    other = (day - timedelta(days=3)).isoformat()
    r = await api.get(f"{FUNNEL}?from={other}&to={other}", token=manager.token)
    assert all(x["count"] == 0 and x["share"] is None for x in r.json["lost_reasons"])

    before = ((await api.get(FUNNEL + q, token=manager.token)).json, (await api.get(LIFECYCLE + q, token=manager.token)).json)
    await ctx.stats.rebuild(clock.now())
    after = ((await api.get(FUNNEL + q, token=manager.token)).json, (await api.get(LIFECYCLE + q, token=manager.token)).json)
    assert after == before
