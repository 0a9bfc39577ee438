"""Manager reports: funnel, reps, lifecycle and churn, RFM layers.

Reports read counters only (``stats_cum``, ``stats_current``, ``stats_rfm``; see
server/services/stats.py), by ``_id``, never leads: the funnel, the lifecycle and the reps report
each read at most three running-total documents, whatever the period; the reps report adds the
overdue-task counts per rep (``stats_overdue``, one document, kept by the ``count_overdue_tasks`` job).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from pymongo import ReplaceOne

from server.actor import Actor
from server.clock import Clock
from server.errors import Forbidden, Invalid, NotFound, detail
from server.ids import maybe_oid
from server.services.leads import LeadService
from server.services.lifecycle import CUSTOMER_STAGES, STAGES, TRANSITIONS
from server.services.stats import FRT_BUCKETS_MIN, REP_FIELDS, StatsService, business_day

MAX_RANGE_DAYS = 366
FUNNEL_PATH = ("new", "contacted", "qualified", "customer")


def check_range(start: date, end: date) -> None:
    if start > end:
        raise Invalid("report.bad_range", details=[detail("from", "after_to", text="from_after_to")])
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise Invalid("report.bad_range", details=[detail("to", "too_long", text="range_too_long", days=MAX_RANGE_DAYS)])


def _rate(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def median_from_histogram(hist: list[int]) -> int | None:
    """The upper bound (minutes) of the bucket holding the median; ``None`` with no samples or
    when the median is in the open-ended last bucket (slower than the last bound)."""
    total = sum(hist)
    if not total:
        return None
    rank = (total + 1) // 2  # the lower median
    seen = 0
    for i, n in enumerate(hist):
        seen += n
        if seen >= rank:
            return FRT_BUCKETS_MIN[i] if i < len(FRT_BUCKETS_MIN) else None
    return None  # pragma: no cover


class ReportService:
    def __init__(self, *, teams_view, users_view, tasks_view, stats_rfm_view, clock: Clock, settings, stats: StatsService) -> None:
        self._clock = clock
        self._settings = settings
        self._stats = stats
        self._teams = teams_view  # read-only: reports read; the counters are StatsService's, layers RfmService's
        self._users = users_view
        self._tasks = tasks_view
        self._rfm = stats_rfm_view
        self.tz = settings.tz

    # ---------------------------------------------------------------- scope
    async def team_scope(self, actor: Actor, team_id: str | None) -> str:
        """The team key a report covers: a manager's own team, an admin's pick or ``*`` (all)."""
        if actor.is_admin:
            if not team_id:
                return "*"
            oid = maybe_oid(team_id)
            if await self._teams.find_one({"_id": oid if oid is not None else team_id}, {"_id": 1}) is None:
                raise NotFound("report.team_not_found")
            return team_id
        if actor.is_manager:
            if team_id and team_id != actor.team_id:
                raise NotFound("report.team_not_found")  # another team: like one that does not exist
            if not actor.team_id:
                raise NotFound("report.team_not_found")
            return actor.team_id
        raise Forbidden("auth.forbidden")

    def today(self) -> date:
        return date.fromisoformat(business_day(self._clock.now(), self.tz))

    async def _populations(self, team: str) -> dict[str, int]:
        docs = await self._stats.current_docs([f"{team}:{s}" for s in STAGES])
        found = {d["stage"]: int(d.get("count") or 0) for d in docs}
        return {s: found.get(s, 0) for s in STAGES}

    @staticmethod
    def _at_start(now_pop: dict[str, int], since: dict[str, int]) -> dict[str, int]:
        """Leads in each stage when the period began = now − the net moves since."""
        return {s: now_pop[s] - since.get(f"entered__{s}", 0) + since.get(f"left__{s}", 0) for s in STAGES}

    async def _stage_window(self, actor: Actor, start: date, end: date, team_id: str | None):
        """The team in scope, its counters in the period, and its stage populations now and at the
        start of the period (both reports need the same reads)."""
        check_range(start, end)
        team = await self.team_scope(actor, team_id)
        period, since = await self._stats.totals(team, start, end)
        now_pop = await self._populations(team)
        return team, period, now_pop, self._at_start(now_pop, since)

    # ---------------------------------------------------------------- funnel
    async def funnel(self, actor: Actor, start: date, end: date, team_id: str | None) -> dict:
        team, period, now_pop, at_start = await self._stage_window(actor, start, end, team_id)
        entered = {s: period.get(f"entered__{s}", 0) for s in STAGES}
        stages = [{"stage": s, "entered": entered[s], "at_start": at_start[s], "now": now_pop[s]} for s in STAGES]
        moves = []
        for src, targets in TRANSITIONS.items():
            base = at_start[src] + entered[src]
            for dst in targets:
                n = period.get(f"moves__{src}__{dst}", 0)
                moves.append({"from": src, "to": dst, "count": n, "base": base, "rate": _rate(n, base)})
        created = period.get("created", 0)
        return {
            "team_id": None if team == "*" else team, "from": start, "to": end,
            "created": created, "conversions": entered["customer"], "conversion_rate": _rate(entered["customer"], created),
            "stages": stages, "moves": moves,
            "path": [m for m in moves if (m["from"], m["to"]) in zip(FUNNEL_PATH, FUNNEL_PATH[1:])],
        }

    # ---------------------------------------------------------------- reps
    async def reps(self, actor: Actor, start: date, end: date, team_id: str | None) -> dict:
        check_range(start, end)
        team = await self.team_scope(actor, team_id)
        user_filter: dict[str, Any] = {"role": {"$in": ["rep", "manager"]}}
        if team != "*":
            user_filter = {"team_id": team, **user_filter}
        people = await self._users.find(user_filter, {"name": 1, "team_id": 1, "role": 1}).to_list(None)
        totals, _ = await self._stats.totals(team, start, end)
        overdue, counted_at = await self._stats.overdue(team)
        rows = []
        for p in sorted(people, key=lambda p: (str(p.get("team_id")), str(p["_id"]))):
            rid = str(p["_id"])
            mine = {field: totals.get(f"{rid}__{field}", 0) for field in REP_FIELDS}
            received, conversions = mine["received"], mine["entered__customer"]
            hist = [mine[f"frt__{i}"] for i in range(len(FRT_BUCKETS_MIN) + 1)]
            rows.append({
                "rep_id": rid, "name": p.get("name"), "team_id": p.get("team_id"),
                "new_leads": received, "created": mine["created"],
                "followups": mine["followups"], "visits": mine["visits"],
                "conversions": conversions, "conversion_rate": _rate(conversions, received),
                "overdue_tasks": overdue.get(rid, 0),
                "first_responses": sum(hist), "median_first_response_min": median_from_histogram(hist),
                "first_response_histogram": hist,
            })
        return {"team_id": None if team == "*" else team, "from": start, "to": end, "buckets_min": list(FRT_BUCKETS_MIN),
                "overdue_counted_at": counted_at, "items": rows}

    # ---------------------------------------------------------------- lifecycle
    async def lifecycle(self, actor: Actor, start: date, end: date, team_id: str | None) -> dict:
        team, period, now_pop, at_start = await self._stage_window(actor, start, end, team_id)
        customers_at_start = sum(at_start[s] for s in CUSTOMER_STAGES)
        churned = period.get("entered__churned", 0)
        return {
            "team_id": None if team == "*" else team, "from": start, "to": end,
            "now": {s: now_pop[s] for s in (*CUSTOMER_STAGES, "churned")},
            "customers_now": sum(now_pop[s] for s in CUSTOMER_STAGES),
            "customers_at_start": customers_at_start,
            "new_customers": period.get("entered__customer", 0),
            "into_at_risk": period.get("entered__at_risk", 0),
            "saved": period.get("moves__at_risk__retained", 0),
            "churned": churned,
            "won_back": period.get("entered__won_back", 0),
            "churn_rate": _rate(churned, customers_at_start),
        }

    # ---------------------------------------------------------------- RFM
    def thresholds(self) -> dict:
        s = self._settings
        return {
            "recency_days": list(s.rfm_recency_days), "frequency": list(s.rfm_frequency),
            "monetary_fen": list(s.rfm_monetary_fen), "layer_scores": dict(s.rfm_layer_scores), "window_days": 365,
        }

    async def rfm(self, actor: Actor, team_id: str | None) -> dict:
        team = await self.team_scope(actor, team_id)
        doc = await self._rfm.find_one({"_id": team}) or {}
        counts = doc.get("counts") or {}
        return {
            "team_id": None if team == "*" else team,
            "computed_on": doc.get("computed_on"),
            "counts": {k: int(counts.get(k, 0)) for k in ("A", "B", "C")},
            "thresholds": self.thresholds(),
        }


def score_rfm(recency_days: int | None, frequency: int, monetary_fen: int, t: dict) -> tuple[int, str]:
    r = 1 if recency_days is None else 3 if recency_days <= t["recency_days"][0] else 2 if recency_days <= t["recency_days"][1] else 1
    f = 3 if frequency >= t["frequency"][0] else 2 if frequency >= t["frequency"][1] else 1
    m = 3 if monetary_fen >= t["monetary_fen"][0] else 2 if monetary_fen >= t["monetary_fen"][1] else 1
    score = r + f + m
    layer = "A" if score >= t["layer_scores"].get("A", 8) else "B" if score >= t["layer_scores"].get("B", 5) else "C"
    return score, layer


class RfmService:
    """The daily ``rfm_layers`` job: score every lead with signed contracts and write ``layer``."""

    def __init__(self, *, stats_rfm, contracts_view, leads_view, leads: LeadService, reports: ReportService) -> None:
        self._contracts = contracts_view  # read-only: contracts and leads are scored; LeadService writes the layers
        self._leads = leads_view
        self._lead_service = leads
        self._rfm = stats_rfm
        self._reports = reports

    async def compute(self, now: datetime) -> dict:
        t = self._reports.thresholds()
        today = date.fromisoformat(business_day(now, self._reports.tz))
        cutoff = (today - timedelta(days=t["window_days"])).isoformat()
        recent = await self._contracts.find({"status": {"$in": ["active", "ended"]}, "start_date": {"$gte": cutoff}}, {"lead_id": 1, "amount_fen": 1, "start_date": 1}).to_list(None)
        active = await self._contracts.find({"status": "active"}, {"lead_id": 1, "start_date": 1}).to_list(None)
        facts: dict[str, dict] = {}
        for c in recent:
            if c.get("start_date", "") > today.isoformat():
                continue
            f = facts.setdefault(c["lead_id"], {"frequency": 0, "monetary_fen": 0, "latest": None})
            f["frequency"] += 1
            f["monetary_fen"] += int(c.get("amount_fen") or 0)
        for c in active:
            if c.get("start_date", "") > today.isoformat():
                continue
            f = facts.setdefault(c["lead_id"], {"frequency": 0, "monetary_fen": 0, "latest": None})
            if f["latest"] is None or c["start_date"] > f["latest"]:
                f["latest"] = c["start_date"]
        layered = await self._leads.find({"layer": {"$in": ["A", "B", "C"]}}, {"layer": 1, "team_id": 1, "rfm": 1}).to_list(None)
        known = {d["_id"]: d for d in layered}
        missing = [i for i in facts if i not in known]
        for i in range(0, len(missing), 5000):
            for d in await self._leads.find({"_id": {"$in": missing[i:i + 5000]}}, {"layer": 1, "team_id": 1, "rfm": 1}).to_list(None):
                known[d["_id"]] = d
        ops: list[tuple[str, str | None, dict]] = []
        counts: dict[str, dict[str, int]] = {}
        for lead_id, lead in known.items():
            f = facts.get(lead_id, {"frequency": 0, "monetary_fen": 0, "latest": None})
            recency = (today - date.fromisoformat(f["latest"])).days if f["latest"] else None
            score, layer = score_rfm(recency, f["frequency"], f["monetary_fen"], t)
            rfm = {"recency_days": recency, "frequency": f["frequency"], "monetary_fen": f["monetary_fen"], "score": score}
            for key in (lead.get("team_id") or "-", "*"):
                counts.setdefault(key, {"A": 0, "B": 0, "C": 0})[layer] += 1
            if lead.get("layer") != layer:
                ops.append((lead_id, layer, rfm))
            elif lead.get("rfm") != rfm:
                ops.append((lead_id, None, rfm))
        await self._lead_service.record_rfm(ops)
        counts.setdefault("*", {"A": 0, "B": 0, "C": 0})
        summaries = [
            ReplaceOne({"_id": key}, {"_id": key, "counts": c, "computed_on": today.isoformat(), "computed_at": now, "thresholds": t}, upsert=True)
            for key, c in counts.items()
        ]
        await self._rfm.bulk_write(summaries, ordered=False)
        stale = await self._rfm.find({}, {"_id": 1}).to_list(None)
        gone = [d["_id"] for d in stale if d["_id"] not in counts]
        if gone:
            await self._rfm.delete_many({"_id": {"$in": gone}})
        return {"scored": len(known), "changed": len(ops), "teams": len(counts) - 1}
