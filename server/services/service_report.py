"""The service report (售后服务报表): tickets, first response, resolution, SLA and satisfaction.

Read from the report counters only (``svc_*`` in ``stats_cum``, folded from the ticket and survey
events by server/services/stats.py): the period's totals of the scope and of each team in it are
at most three running-total documents each, read by ``_id`` in one query, and the handlers' names
one more; nothing here grows with the number of tickets or surveys (docs/reports.md "Service").
"""

from __future__ import annotations

import re
from datetime import date

from server.actor import Actor
from server.ids import maybe_oid
from server.services.reports import ReportService, check_range
from server.services.stats import FRT_BUCKETS_MIN, RES_BUCKETS_H, StatsService

_HANDLER_KEY = re.compile(r"^(.+?)__svc_")


def median_bound(hist: list[int], bounds: tuple) -> int | None:
    """The upper bound of the bucket holding the lower median; None with no samples, or when it is
    in the open-ended last bucket."""
    total = sum(hist)
    if not total:
        return None
    rank, seen = (total + 1) // 2, 0
    for i, n in enumerate(hist):
        seen += n
        if seen >= rank:
            return bounds[i] if i < len(bounds) else None
    return None  # pragma: no cover


def figures(counters: dict[str, int], prefix: str = "") -> dict:
    """One row of the report from a period's counters (``prefix``: ``{handler}__`` for a handler)."""

    def n(field: str) -> int:
        return int(counters.get(f"{prefix}svc_{field}", 0))

    frt = [n(f"frt__{i}") for i in range(len(FRT_BUCKETS_MIN) + 1)]
    res = [n(f"res__{i}") for i in range(len(RES_BUCKETS_H) + 1)]
    resolved, csat_n, nps_n = n("resolved"), n("csat_n"), n("nps_n")
    return {
        "tickets_opened": n("opened"),
        "tickets_assigned": n("assigned"),
        "tickets_resolved": resolved,
        "tickets_reopened": n("reopened"),
        "first_responses": sum(frt),
        "median_first_response_min": median_bound(frt, FRT_BUCKETS_MIN),
        "first_response_histogram": frt,
        "resolutions_timed": sum(res),
        "median_resolution_h": median_bound(res, RES_BUCKETS_H),
        "resolution_histogram": res,
        "resolved_breached": n("resolved_breached"),
        "sla_breach_rate": round(n("resolved_breached") / resolved, 4) if resolved else None,
        "breaches_first_response": n("breach__first_response"),
        "breaches_resolution": n("breach__resolution"),
        "surveys_answered": csat_n,
        "csat_avg": round(n("csat_sum") / csat_n, 2) if csat_n else None,
        "nps_answers": nps_n,
        "nps_promoters": n("nps_pro"),
        "nps_detractors": n("nps_det"),
        "nps": round((n("nps_pro") - n("nps_det")) * 100 / nps_n, 1) if nps_n else None,
    }


def _active(row: dict) -> bool:
    return any(v for k, v in row.items() if isinstance(v, int) and not k.endswith("_histogram"))


class ServiceReportService:
    def __init__(self, *, reports: ReportService, stats: StatsService, teams_view, users_view) -> None:
        self._reports = reports  # the scope rule every report shares
        self._stats = stats
        self._teams = teams_view  # read-only: names of teams and handlers
        self._users = users_view

    async def service(self, actor: Actor, start: date, end: date, team_id: str | None) -> dict:
        check_range(start, end)
        scope = await self._reports.team_scope(actor, team_id)
        if scope == "*":
            teams = {str(t["_id"]): t.get("name") for t in await self._teams.find({}, {"name": 1}).to_list(None)}
        else:
            oid = maybe_oid(scope)
            team = await self._teams.find_one({"_id": oid if oid is not None else scope}, {"name": 1})
            teams = {scope: (team or {}).get("name")}
        scopes = [scope, *(t for t in sorted(teams) if t != scope)]
        periods = await self._stats.period_totals(scopes, start, end)
        total = periods.get(scope, {})
        team_rows = [{"team_id": t, "name": teams.get(t), **figures(periods.get(t, {}))} for t in sorted(teams)]
        handler_ids = sorted({m.group(1) for k, v in total.items() if v and (m := _HANDLER_KEY.match(k))})
        oids = [oid for oid in (maybe_oid(h) for h in handler_ids) if oid is not None]
        people = {str(u["_id"]): u for u in await self._users.find({"_id": {"$in": oids}}, {"name": 1, "team_id": 1}).to_list(None)} if oids else {}
        handler_rows = []
        for h in handler_ids:
            row = figures(total, f"{h}__")
            if _active(row):
                person = people.get(h) or {}
                handler_rows.append({"handler_id": h, "name": person.get("name"), "team_id": person.get("team_id"), **row, "tickets_opened": None})
        return {
            "team_id": None if scope == "*" else scope, "from": start, "to": end,
            "first_response_buckets_min": list(FRT_BUCKETS_MIN), "resolution_buckets_h": list(RES_BUCKETS_H),
            "totals": figures(total), "teams": team_rows, "handlers": handler_rows,
        }
