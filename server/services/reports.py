"""Manager reports: funnel, reps, lifecycle and churn, RFM layers.

Reports read counters only (``stats_cum``, ``stats_current``, ``stats_rfm``; see
server/services/stats.py), by ``_id``, never leads: the funnel, the lifecycle and the reps report
each read at most three running-total documents, whatever the period; the reps report adds the
overdue-task counts per rep (``stats_overdue``, one document, kept by the ``count_overdue_tasks`` job).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import unquote

from pymongo import ReplaceOne

from server.actor import Actor
from server.clock import Clock
from server.errors import Forbidden, Invalid, NotFound, detail
from server.ids import maybe_oid
from server.schemas.team_settings import TeamSettings, effective_team_settings
from server.services import reasons
from server.services.leads import LeadService
from server.services.lifecycle import CUSTOMER_STAGES, STAGES, TRANSITIONS
from server.services.stats import FRT_BUCKETS_MIN, MONEY_GROUPS, REP_FIELDS, StatsService, business_day, key_part, money_key

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
    def __init__(self, *, teams_view, users_view, tasks_view, stats_rfm_view, clock: Clock, settings, stats: StatsService, team_settings=None) -> None:
        self._team_settings = team_settings or _default_settings(settings)  # UserService.team_settings: a team's reason catalogues
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
            "lost_reasons": await self._reasons(team, "lost", period),
        }

    async def _reasons(self, team: str, stage: str, period: dict[str, int]) -> list[dict]:
        """Moves into ``stage`` in the period by reason code, labelled from the team's catalogue
        (all teams: the default catalogue; a code no catalogue lists is labelled by itself)."""
        catalogue = (await self._team_settings(None if team == "*" else team)).reasons
        return reasons.counted(catalogue, stage, period)

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
            "churn_reasons": await self._reasons(team, "churned", period),
        }

    # ---------------------------------------------------------------- revenue
    async def revenue(self, actor: Actor, start: date, end: date, team_id: str | None, group_by: str) -> dict:
        """Signed, collected, outstanding and overdue money per group (docs/reports.md "Revenue"):
        the period's money counters (three running-total documents), the receivables now (one
        ``stats_money`` document) and the names of the group's people or teams."""
        check_range(start, end)
        if group_by not in REVENUE_GROUPS:
            raise Invalid("report.bad_group_by", details=[detail("group_by", "enum", text="group_by_values", values=", ".join(REVENUE_GROUPS))])
        team = await self.team_scope(actor, team_id)
        period, _ = await self._stats.totals(team, start, end)
        money_now = await self._stats.money_now(team)
        receivables = {row[0]: (int(row[1]), int(row[2])) for row in (money_now.get("receivables") or {}).get(group_by, [])}
        names: dict[str, str | None] = {}
        values: list[str] = []
        if group_by == "team" and team != "*":
            values = [team]
            total = money_now.get("total") or [0, 0]
            receivables = {team: (int(total[0]), int(total[1]))}
        elif group_by == "team":
            teams = await self._teams.find({}, {"name": 1}).to_list(None)
            names = {str(t["_id"]): t.get("name") for t in teams}
            values = sorted(names)
        elif group_by == "rep":
            user_filter: dict[str, Any] = {"role": {"$in": ["rep", "manager"]}}
            if team != "*":
                user_filter = {"team_id": team, **user_filter}
            people = await self._users.find(user_filter, {"name": 1}).to_list(None)
            names = {str(p["_id"]): p.get("name") for p in people}
            values = sorted(names)
        elif group_by == "month":
            month, last = start.isoformat()[:7], end.isoformat()[:7]
            while month <= last:
                values.append(month)
                month = _next_month(month)
            receivables = {m: v for m, v in receivables.items() if m in values}
        seen = _money_values(period, group_by) if not (group_by == "team" and team != "*") else set()
        if group_by != "month":
            values += sorted((seen | set(receivables)) - set(values))
        total_now = money_now.get("total") or [0, 0]
        items = []
        for value in values:
            row = _money_row(period, group_by if not (group_by == "team" and team != "*") else None, value)
            row.update(outstanding_fen=receivables.get(value, (0, 0))[0], overdue_fen=receivables.get(value, (0, 0))[1])
            items.append({"key": None if value == "-" else value, "name": names.get(value), **row})
        totals = {**_money_row(period, None, None), "outstanding_fen": int(total_now[0]), "overdue_fen": int(total_now[1])}
        return {"team_id": None if team == "*" else team, "from": start, "to": end, "group_by": group_by,
                "money_counted_at": money_now.get("computed_at"), "totals": totals, "items": items}

    # ---------------------------------------------------------------- retention
    async def retention(self, actor: Actor, start: date, end: date, team_id: str | None) -> dict:
        team, period, _now_pop, at_start = await self._stage_window(actor, start, end, team_id)
        money_now = await self._stats.money_now(team)
        customers_at_start = sum(at_start[s] for s in CUSTOMER_STAGES)
        ending, renewed = int(period.get("rv__ending_n", 0)), int(period.get("rv__ending_renewed_n", 0))
        repurchases = int(period.get("rv__repurchase_n", 0))
        first, last = start.isoformat()[:7], end.isoformat()[:7]
        cohorts = []
        for month, size, active in money_now.get("cohorts") or []:
            if first <= month <= last:
                cohorts.append({"month": month, "customers": int(size), "active": [int(a) for a in active],
                                "retention": [_rate(int(a), int(size)) for a in active]})
        return {
            "team_id": None if team == "*" else team, "from": start, "to": end,
            "contracts_ending": ending, "renewed": renewed, "renewal_rate": _rate(renewed, ending),
            "repurchases": repurchases, "customers_at_start": customers_at_start, "repurchase_rate": _rate(repurchases, customers_at_start),
            "churned": int(period.get("entered__churned", 0)), "won_back": int(period.get("entered__won_back", 0)),
            "cohorts": cohorts, "cohorts_counted_at": money_now.get("computed_at"),
        }

    # ---------------------------------------------------------------- RFM
    async def thresholds(self, team: str | None) -> dict:
        """The RFM thresholds of a team (its settings' ``rfm`` group), or the defaults (``*``, ``-``)."""
        rfm = (await self._team_settings(None if team in (None, "*", "-") else team)).rfm
        return {
            "recency_days": list(rfm.recency_days), "frequency": list(rfm.frequency), "monetary_fen": list(rfm.monetary_fen),
            "layer_scores": dict(rfm.layer_scores), "window_days": rfm.window_days,
        }

    async def rfm(self, actor: Actor, team_id: str | None) -> dict:
        team = await self.team_scope(actor, team_id)
        doc = await self._rfm.find_one({"_id": team}) or {}
        counts = doc.get("counts") or {}
        return {
            "team_id": None if team == "*" else team,
            "computed_on": doc.get("computed_on"),
            "counts": {k: int(counts.get(k, 0)) for k in ("A", "B", "C")},
            "thresholds": await self.thresholds(team),
        }


REVENUE_GROUPS = ("rep", "team", "source", "channel", "campaign", "month")
MONEY_FIELDS = {"signed_count": "signed_n", "signed_fen": "signed_fen", "new_count": "new_n", "new_fen": "new_fen",
                "renewal_count": "renewal_n", "renewal_fen": "renewal_fen", "repurchase_count": "repurchase_n",
                "repurchase_fen": "repurchase_fen", "collected_fen": "collected_fen", "payments": "payments_n"}


def _money_row(period: dict[str, int], group: str | None, value: str | None) -> dict[str, int]:
    if group is None:
        return {out: int(period.get(money_key(None, metric=m), 0)) for out, m in MONEY_FIELDS.items()}
    return {out: int(period.get(f"rv_{MONEY_GROUPS[group]}__{key_part(value) if value != '-' else '-'}__{m}", 0)) for out, m in MONEY_FIELDS.items()}


def _money_values(period: dict[str, int], group: str) -> set[str]:
    """The group's values with money counters in the period (decoded; ``-`` for none)."""
    prefix = f"rv_{MONEY_GROUPS[group]}__"
    out = set()
    for key, n in period.items():
        if key.startswith(prefix) and n:
            value = key[len(prefix):].split("__", 1)[0]
            out.add("-" if value == "-" else unquote(value))
    return out


def _next_month(month: str) -> str:
    y, m = int(month[:4]), int(month[5:7])
    return f"{y + m // 12:04d}-{m % 12 + 1:02d}"


def _default_settings(settings):
    async def defaults(team_id: str | None) -> TeamSettings:
        return effective_team_settings(settings, None)
    return defaults


def score_rfm(recency_days: int | None, frequency: int, monetary_fen: int, t: dict) -> tuple[int, str]:
    r = 1 if recency_days is None else 3 if recency_days <= t["recency_days"][0] else 2 if recency_days <= t["recency_days"][1] else 1
    f = 3 if frequency >= t["frequency"][0] else 2 if frequency >= t["frequency"][1] else 1
    m = 3 if monetary_fen >= t["monetary_fen"][0] else 2 if monetary_fen >= t["monetary_fen"][1] else 1
    score = r + f + m
    layer = "A" if score >= t["layer_scores"].get("A", 8) else "B" if score >= t["layer_scores"].get("B", 5) else "C"
    return score, layer


class RfmService:
    """The daily ``rfm_layers`` job: score every customer (a lead with a signed contract) from
    money received and real activity, by its team's thresholds, and write ``layer``.

    **Recency**: days since the latest of its payments received, the start of a signed contract
    (up to today) and its last follow-up (``last_activity_at``). **Frequency** and **monetary**:
    the number and the total of payments received in the team's window (``rfm.window_days``).
    A long contract paid in instalments therefore stays recent and valuable while money comes in,
    however long ago it was signed.
    """

    def __init__(self, *, stats_rfm, contracts_view, leads_view, leads: LeadService, reports: ReportService, team_settings=None) -> None:
        self._contracts = contracts_view  # read-only: contracts and leads are scored; LeadService writes the layers
        self._leads = leads_view
        self._lead_service = leads
        self._rfm = stats_rfm
        self._reports = reports

    async def compute(self, now: datetime) -> dict:
        tz = self._reports.tz
        today = date.fromisoformat(business_day(now, tz))
        facts: dict[str, dict] = {}  # lead → latest contract start, payments [(day, fen)]
        async for c in self._contracts.find({"status": {"$in": ["active", "ended"]}}, {"lead_id": 1, "start_date": 1, "payments": 1}):
            f = facts.setdefault(c["lead_id"], {"latest": None, "payments": []})
            start = c.get("start_date") or ""
            if start and start <= today.isoformat() and (f["latest"] is None or start > f["latest"]):
                f["latest"] = start
            for p in c.get("payments") or []:
                received = p.get("received_at")
                if isinstance(received, datetime):
                    f["payments"].append((business_day(received, tz), int(p.get("amount_fen") or 0)))
        fields = {"layer": 1, "team_id": 1, "rfm": 1, "last_activity_at": 1}
        layered = await self._leads.find({"layer": {"$in": ["A", "B", "C"]}}, fields).to_list(None)
        known = {d["_id"]: d for d in layered}
        missing = [i for i in facts if i not in known]
        for i in range(0, len(missing), 5000):
            for d in await self._leads.find({"_id": {"$in": missing[i:i + 5000]}}, fields).to_list(None):
                known[d["_id"]] = d
        by_team: dict[str, dict] = {}
        ops: list[tuple[str, str | None, dict]] = []
        counts: dict[str, dict[str, int]] = {}
        for lead_id, lead in known.items():
            team = lead.get("team_id") or "-"
            if team not in by_team:
                by_team[team] = await self._reports.thresholds(team)
            t = by_team[team]
            rfm = rfm_facts(facts.get(lead_id, {"latest": None, "payments": []}), lead.get("last_activity_at"), today, t["window_days"], tz)
            score, layer = score_rfm(rfm["recency_days"], rfm["frequency"], rfm["monetary_fen"], t)
            rfm["score"] = score
            for key in (team, "*"):
                counts.setdefault(key, {"A": 0, "B": 0, "C": 0})[layer] += 1
            if lead.get("layer") != layer:
                ops.append((lead_id, layer, rfm))
            elif lead.get("rfm") != rfm:
                ops.append((lead_id, None, rfm))
        await self._lead_service.record_rfm(ops)
        counts.setdefault("*", {"A": 0, "B": 0, "C": 0})
        summaries = []
        for key, c in counts.items():
            t = by_team.get(key) or await self._reports.thresholds(key)
            summaries.append(ReplaceOne({"_id": key}, {"_id": key, "counts": c, "computed_on": today.isoformat(), "computed_at": now, "thresholds": t}, upsert=True))
        await self._rfm.bulk_write(summaries, ordered=False)
        stale = await self._rfm.find({}, {"_id": 1}).to_list(None)
        gone = [d["_id"] for d in stale if d["_id"] not in counts]
        if gone:
            await self._rfm.delete_many({"_id": {"$in": gone}})
        return {"scored": len(known), "changed": len(ops), "teams": len(counts) - 1}


def rfm_facts(facts: dict, last_activity: datetime | None, today: date, window_days: int, tz) -> dict:
    """Pure: recency (days since the latest payment, contract start or follow-up; None: none of
    them), and frequency / monetary of the payments received in the window ending today."""
    cutoff = (today - timedelta(days=window_days)).isoformat()
    paid = [(day, fen) for day, fen in facts["payments"] if cutoff < day <= today.isoformat()]
    moments = [d for d in (facts.get("latest"), *(day for day, _ in facts["payments"] if day <= today.isoformat())) if d]
    if isinstance(last_activity, datetime):
        moments.append(min(business_day(last_activity, tz), today.isoformat()))
    recency = (today - date.fromisoformat(max(moments))).days if moments else None
    return {"recency_days": recency, "frequency": len(paid), "monetary_fen": sum(fen for _, fen in paid)}
