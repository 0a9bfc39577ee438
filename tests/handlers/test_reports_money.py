"""Revenue and retention reports, lifetime value: every figure equals a recount from the contracts
and payments stored in the database (not from the counters), for each group_by, with scoping,
bad input and a read cost that does not depend on the period."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from urllib.parse import quote

import pytest

from jobs.registry import load_jobs, run_job
from leads_kit import LEADS, make_lead
from money_kit import SHANGHAI, at_shanghai, dated, pay, sign
from server.clock import FixedClock
from server.services.reports import _money_values
from server.services.stats import key_part, money_key

load_jobs()
REVENUE, RETENTION = "/api/v1/reports/revenue", "/api/v1/reports/retention"
GROUPS = ("rep", "team", "source", "channel", "campaign", "month")


@pytest.fixture
def clock():
    return FixedClock(datetime.now(timezone.utc).replace(microsecond=0))


def bday(at: datetime) -> str:
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return at.astimezone(SHANGHAI).date().isoformat()


def q(d1: date, d2: date, **extra) -> str:
    return f"?from={d1.isoformat()}&to={d2.isoformat()}" + "".join(f"&{k}={quote(str(v))}" for k, v in extra.items())


def recount_revenue(raw_db, team: str | None, d1: date, d2: date, group_by: str, today: date) -> dict:
    """Signed, collected, outstanding and overdue per group value, from raw contracts and leads."""
    signed = sorted((c for c in raw_db["contracts"].find({"status": {"$in": ["active", "ended"]}})), key=lambda c: c["activated_at"])
    leads = {d["_id"]: d for d in raw_db["leads"].find({}, {"source": 1})}
    seen: set[str] = set()
    rows: dict = {}
    totals = {"signed_fen": 0, "signed_count": 0, "new_fen": 0, "renewal_fen": 0, "repurchase_fen": 0, "collected_fen": 0, "outstanding_fen": 0, "overdue_fen": 0}

    def key(c: dict, month: str):
        src = leads.get(c["lead_id"], {}).get("source") or {}
        return {"rep": c["owner_id"], "team": c["team_id"], "source": src.get("kind"), "channel": src.get("channel"),
                "campaign": src.get("campaign"), "month": month}[group_by]

    def add(k, field: str, n: int) -> None:
        row = rows.setdefault(k, dict.fromkeys(totals, 0))
        row[field] += n
        totals[field] += n

    for c in signed:
        sale = "renewal" if c.get("renews") else "repurchase" if c["lead_id"] in seen else "new"
        seen.add(c["lead_id"])
        if team and c["team_id"] != team:
            continue
        day = bday(c["activated_at"])
        if d1.isoformat() <= day <= d2.isoformat():
            k = key(c, day[:7])
            add(k, "signed_fen", c["amount_fen"])
            add(k, "signed_count", 1)
            add(k, f"{sale}_fen", c["amount_fen"])
        for p in c["payments"]:
            pday = bday(p["received_at"])
            if d1.isoformat() <= pday <= d2.isoformat():
                add(key(c, pday[:7]), "collected_fen", p["amount_fen"])
        open_fen = c["amount_fen"] - sum(i["paid_fen"] for i in c["payment_plan"])
        if open_fen:
            k = key(c, bday(c["activated_at"])[:7])
            add(k, "outstanding_fen", open_fen)
            add(k, "overdue_fen", sum(i["amount_fen"] - i["paid_fen"] for i in c["payment_plan"] if i["due_date"] < today.isoformat()))
    return {"rows": rows, "totals": totals}


FIELDS = ("signed_fen", "signed_count", "new_fen", "renewal_fen", "repurchase_fen", "collected_fen", "outstanding_fen", "overdue_fen")


@pytest.mark.gen_test(timeout=120)
async def test_revenue_and_retention_equal_a_recount_from_contracts_and_payments(api, people, ctx, clock, raw_db, recorder):
    manager, r1, r2 = await people.manager(), await people.rep(), await people.rep()
    south, south_manager = await people.rep(team="华南销售部"), await people.manager(team="华南销售部")
    admin = await people.admin()
    bosses = (manager, south_manager, admin)
    now = clock.now()
    today = now.astimezone(SHANGHAI).date()
    d0 = today - timedelta(days=40)

    def day(n: int) -> date:
        return today - timedelta(days=n)

    at = dated(clock)

    a, b, c = await make_lead(api, r1, name="甲"), await make_lead(api, r2, name="乙"), await make_lead(api, south, name="丙")
    e, f, g = await make_lead(api, r1, name="戊"), await make_lead(api, r2, name="己"), await make_lead(api, r1, name="庚")
    # Before the period: three contracts that end inside it (one never renewed, one renewed before
    # its end, one renewed after it had ended).
    ce = await at(day(400), lambda: sign(api, r1, bosses, e, 3_000_000, day(400), day(16)))
    cf = await at(day(390), lambda: sign(api, r2, bosses, f, 2_000_000, day(390), day(30)))
    await at(day(380), lambda: sign(api, r1, bosses, g, 1_000_000, day(380), day(36)))
    # In the period: a new contract with an overdue instalment, a repurchase, a renewal; another team's.
    ca = await at(day(39), lambda: sign(api, r1, bosses, a, 5_000_000, day(39), plan=[(day(39), 3_000_000), (day(30), 2_000_000)]))
    await at(day(38), lambda: pay(api, manager, ca, 3_000_000, at_shanghai(day(38))))
    ca2 = await at(day(35), lambda: sign(api, r1, bosses, a, 1_000_000, day(35)))
    await at(day(34), lambda: pay(api, admin, ca2, 1_000_000, at_shanghai(day(34))))
    await at(day(20), lambda: sign(api, r1, bosses, a, 0, day(20), renew_of=ca))
    cb = await at(day(37), lambda: sign(api, r2, bosses, b, 8_000_000, day(37)))
    await pay(api, manager, cb, 500_000, at_shanghai(day(45)))  # recorded now, received before the period
    await pay(api, manager, cb, 700_000, at_shanghai(day(1)))
    cc = await at(day(36), lambda: sign(api, south, bosses, c, 2_000_000, day(36)))
    await pay(api, south_manager, cc, 500_000, at_shanghai(day(2)))
    await at(day(20), lambda: sign(api, r1, bosses, e, 0, day(15), renew_of=ce))  # before ce ends
    await run_job(ctx, "end_contracts", at_shanghai(day(29)))  # cg and cf end, unrenewed so far
    await at(day(25), lambda: sign(api, r2, bosses, f, 0, day(29), renew_of=cf))  # cf renewed late
    await run_job(ctx, "end_contracts", now)  # ce ends, renewed
    assert raw_db["contracts"].count_documents({"status": "ended"}) == 3
    await run_job(ctx, "fold_stats", now)
    await run_job(ctx, "count_money", now)

    # Revenue: every group, as the manager (own team) and as an admin (all teams).
    for token, team in ((manager.token, manager.team_id), (admin.token, None)):
        for group_by in GROUPS:
            r = await api.get(REVENUE + q(d0, today, group_by=group_by), token=token)
            assert r.status == 200, r.body
            truth = recount_revenue(raw_db, team, d0, today, group_by, today)
            got = {i["key"]: {k: i[k] for k in FIELDS} for i in r.json["items"] if any(i[k] for k in FIELDS)}
            want = {k: v for k, v in truth["rows"].items() if any(v.values())}
            if group_by == "team" and team:
                want = {team: truth["totals"]}
            if group_by == "month":  # the months of the period (outstanding: of the contracts signed in each)
                want = {k: v for k, v in want.items() if d0.isoformat()[:7] <= k <= today.isoformat()[:7]}
            assert got == want, (group_by, team)
            assert {k: r.json["totals"][k] for k in FIELDS} == truth["totals"], (group_by, team)
    r = await api.get(REVENUE + q(d0, today, group_by="rep"), token=manager.token)
    names = {i["key"]: i["name"] for i in r.json["items"]}
    assert names[r1.id] == r1.user["name"] and manager.id in names  # the team's staff are listed, with names
    assert r.json["totals"]["new_count"] == 2 and r.json["totals"]["repurchase_count"] == 1 and r.json["totals"]["renewal_count"] == 3
    assert r.json["money_counted_at"]

    # Retention: contracts ending in the period and renewed, repurchases, cohorts.
    r = await api.get(RETENTION + q(d0, today), token=manager.token)
    assert r.status == 200, r.body
    team_contracts = list(raw_db["contracts"].find({"team_id": manager.team_id, "status": {"$in": ["active", "ended"]}}))
    ending = [x for x in team_contracts if d0.isoformat() <= x["end_date"] <= today.isoformat() and x["status"] == "ended"]
    renewed = [x for x in ending if any(y.get("renews") == x["_id"] for y in team_contracts)]
    assert (r.json["contracts_ending"], r.json["renewed"]) == (len(ending), len(renewed)) == (3, 2)
    assert r.json["renewal_rate"] == round(2 / 3, 4)
    assert r.json["repurchases"] == 1
    firsts: dict[str, list] = {}
    for x in team_contracts:
        firsts.setdefault(x["lead_id"], []).append((x["start_date"], x["end_date"]))
    this_month = today.isoformat()[:7]
    cohorts: dict[str, list] = {}
    for runs in firsts.values():
        first = min(runs)[0][:7]
        months, m = [], first
        while m <= this_month and len(months) <= 12:
            months.append(m)
            m = f"{int(m[:4]) + int(m[5:]) // 12:04d}-{int(m[5:]) % 12 + 1:02d}"
        row = cohorts.setdefault(first, [0, [0] * len(months)])
        row[0] += 1
        for n, month in enumerate(months):
            row[1][n] += int(any(s[:7] <= month <= e_[:7] for s, e_ in runs))
    want = [{"month": m, "customers": size, "active": active} for m, (size, active) in sorted(cohorts.items()) if d0.isoformat()[:7] <= m <= this_month]
    assert [{k: x[k] for k in ("month", "customers", "active")} for x in r.json["cohorts"]] == want and want

    # Lifetime value: collected to date on the lead, and the list sorted by it.
    r = await api.get(f"{LEADS}/{a['id']}", token=r1.token)
    assert r.json["lifetime_value_fen"] == 4_000_000
    r = await api.get(f"{LEADS}?sort=lifetime_value&limit=1", token=manager.token)
    assert r.status == 200, r.body
    first_page = [i["name"] for i in r.json["items"]]
    r = await api.get(f"{LEADS}?sort=lifetime_value&limit=1&cursor={r.json['next_cursor']}", token=manager.token)
    assert first_page + [i["name"] for i in r.json["items"]] == ["甲", "乙"] and r.json["next_cursor"] is None
    assert r.json["items"][0]["lifetime_value_fen"] == 1_200_000
    # rebuild-stats recomputes the same counters and lifetime values
    before = raw_db["stats_cum"].find_one({"_id": f"{manager.team_id}:head"})
    raw_db_leads_before = {d["_id"]: d.get("lifetime_value_fen") for d in raw_db["leads"].find({}, {"lifetime_value_fen": 1})}
    await ctx.stats.rebuild(now)
    after = raw_db["stats_cum"].find_one({"_id": f"{manager.team_id}:head"})
    assert {k: v for k, v in before.items() if k.startswith("rv")} == {k: v for k, v in after.items() if k.startswith("rv")}
    assert {d["_id"]: d.get("lifetime_value_fen") for d in raw_db["leads"].find({}, {"lifetime_value_fen": 1})} == raw_db_leads_before

    # A report reads the same few documents for one day as for 366.
    for path in (REVENUE + "?group_by=campaign&", RETENTION + "?"):
        counts = []
        for d1 in (today, today - timedelta(days=365)):
            with recorder.counting() as cmds:
                r = await api.get(path + q(d1, today)[1:], token=manager.token)
            assert r.status == 200, r.body
            counts.append(len(cmds))
        assert counts[0] == counts[1] <= 4, (path, counts)


@pytest.mark.gen_test(timeout=60)
async def test_money_reports_scope_and_bad_input(api, people):
    manager, rep = await people.manager(), await people.rep()
    theirs = await people.manager(team="华南销售部")
    admin = await people.admin()
    d = date(2026, 11, 1)
    for path in (REVENUE, RETENTION):
        r = await api.get(path + q(d, d, team_id=theirs.team_id), token=manager.token)
        assert (r.status, r.error_code) == (404, "report.team_not_found"), path
        r = await api.get(path + q(d, d), token=rep.token)
        assert r.status == 403, path
        r = await api.get(path + q(d, d, team_id=theirs.team_id), token=admin.token)
        assert r.status == 200 and r.json["team_id"] == theirs.team_id, path
        r = await api.get(path + q(d, d + timedelta(days=366)), token=manager.token)
        assert (r.status, r.error_code) == (422, "report.bad_range"), path
        assert r.json["error"]["details"][0]["field"] == "to"
    for bad in ("day", "REP", "rep,team", ""):
        r = await api.get(REVENUE + q(d, d, group_by=bad), token=manager.token)
        assert r.status == 422, bad
        assert "group_by" in str(r.json["error"]["details"]), (bad, r.body)


def test_group_values_survive_flat_counter_names():
    """Campaign and channel names with dots, underscores, dollars or percent signs make flat,
    unambiguous counter names and read back as they were."""
    values = ["双11_促销.v2", "$100%off", "-", "a__b", None]
    period = {money_key("campaign", v, "signed_fen"): i + 1 for i, v in enumerate(values)}
    assert all("." not in k and not k.startswith("$") and k.count("__") == 2 for k in period)
    assert _money_values(period, "campaign") == {"双11_促销.v2", "$100%off", "-", "a__b"} | {key_part(None)}
