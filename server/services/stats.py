"""Report counters: the timeline (``lead_events``) folded into small pre-aggregated documents.

Request paths write nothing here (their command budgets are spent). The ``fold_stats`` job reads
events that carry no ``fold`` marker, in batches, and turns them into counters:

- ``stats_cum``: *running totals* per scope (a team, ``-`` for leads without one, ``*`` for the
  company) and business day: ``_id = "{scope}:{day}"`` counts every event up to the end of that day
  (day in the business time zone). One document for each day from the scope's first event to its
  last (days without events are copies), and ``"{scope}:head"`` with the totals up to the last day
  and ``first``/``last``. Team counters have plain names (``created``, ``entered__customer``,
  ``moves__qualified__customer``, per reason of a lost lead or a churned customer
  ``lost_reason__price`` / ``churn_reason__service``), per-rep ones ``{rep}__{field}`` (``REP_FIELDS``). Names are flat:
  nx-27017 stores a dotted ``$inc`` of an upserted document as a literal key
  (docs/mongodb-compat.md). Any period is the difference of two documents, so every report reads
  at most three of them whatever the length of the period, the number of reps or of leads
  (per-day documents made a 30-day company reps report read 3,000 documents, and a funnel for a
  period a year back every day since).
- Money in the same documents (``MONEY_KINDS``: ``contract_signed``, ``payment_recorded``,
  ``contract_ended``): ``rv__{metric}`` per scope and ``rv_{group}__{value}__{metric}`` per rep,
  source, channel, campaign, month (and team, company scope only); values percent-encoded by
  ``key_part``. Payments count on ``received_at``'s day, endings on ``end_date``'s day.
- ``stats_money``: per scope, outstanding and overdue money now and the customer cohorts, replaced
  whole by the ``count_money`` job (``count_money``).
- ``stats_current``: ``_id = "{team}:{stage}"`` and ``"*:{stage}"``: leads in each stage now.
- ``stats_leads``: the fold's memory per lead (team, owner, stage, when it was assigned and
  whether it was answered), so owners at the time and first-response times cross batches.

Exactly once, crash-safe, in four steps that can each be repeated:

1. **claim**: ``update_many`` sets ``fold = {batch: B, state: "claimed"}`` on up to N unmarked
   events (``fold: null`` in the filter, so two claimers never share an event). A claimed batch
   left by a crashed run is picked up again before anything new is claimed.
2. **prepare**: the deltas of batch B are computed from the events and the lead states, and
   written whole into ``stats_batches`` (a write-ahead record) with a sequence number S taken from
   a counter. If the record already exists it is reused: nothing is computed twice.
3. **apply**: one ``bulk_write`` per collection; every counter document carries ``seq`` (the last
   batch applied to it) and the update's filter is ``{_id, seq: {$lt: S}}`` with ``upsert``: a
   document that already has S does not match, its upsert collides on ``_id`` (duplicate key) and
   is counted as applied. Lead states are absolute values, replaced whole (idempotent).
   (A ``batches: {$ne: B}`` guard does not work on nx-27017: ``$ne`` on an array still matches a
   document whose array contains B, so a repeated batch was applied twice in a probe. Batches run
   in order under the job's lease, so a monotonic sequence is an exact guard on both databases.)
4. **finish**: the events are marked ``fold.state = "done"`` and the record is deleted.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from bson import ObjectId
from pymongo import ReplaceOne, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from server.clock import Clock
from server.services.leads import LeadService
from server.services.lifecycle import STAGES

# First response (assignment → first follow-up): histogram bucket upper bounds in minutes; the last
# bucket (index len(FRT_BUCKETS_MIN)) holds everything slower.
FRT_BUCKETS_MIN = (5, 15, 30, 60, 120, 240, 480, 1440, 2880, 10080)
log = logging.getLogger("mpcrm.stats")

# Per-rep counters kept as running totals in ``stats_cum`` (what the reps report shows).
REP_FIELDS = frozenset(("received", "created", "followups", "visits", "entered__customer", "frt_n",
                        *(f"frt__{i}" for i in range(len(FRT_BUCKETS_MIN) + 1))))
# Money (docs/reports.md "Revenue"): signed contracts, payments received and contracts ending, kept
# as ``rv__{metric}`` per scope and ``rv_{group}__{value}__{metric}`` per group value.
MONEY_KINDS = ("contract_signed", "payment_recorded", "contract_ended")
SALES = ("new", "renewal", "repurchase")
MONEY_GROUPS = {"rep": "rep", "source": "src", "channel": "ch", "campaign": "cp", "month": "mo", "team": "team"}
OWNER_KINDS = ("assigned", "claimed")
RELEASE_KINDS = ("released", "reclaimed")
SEQ_ID = "fold_seq"
# Moves into these stages are also counted per reason code: ``lost_reason__{code}``, ``churn_reason__{code}``.
REASON_COUNTERS = {"lost": "lost_reason__", "churned": "churn_reason__"}
_REASON_CODE = re.compile(r"^[a-z0-9_]{1,32}$")  # the catalogue's code pattern: a counter name stays flat and short


# After-sale service (docs/reports.md "Service"): ticket and survey events, counted per team as
# ``svc_{field}`` and per handler (the ticket's assignee at the time) as ``{handler}__svc_{field}``.
SERVICE_KINDS = ("ticket_opened", "ticket_assigned", "ticket_replied", "ticket_resolved", "ticket_reopened", "ticket_closed", "ticket_breached", "survey_answered")
# Resolution time (opened → resolved): histogram bucket upper bounds in hours, the last bucket slower.
RES_BUCKETS_H = (1, 2, 4, 8, 16, 24, 48, 72, 120, 168, 336, 720)
BREACH_KINDS = ("first_response", "resolution")


def bucket_of(value: float, bounds: tuple) -> int:
    for i, bound in enumerate(bounds):
        if value <= bound:
            return i
    return len(bounds)


def _count(value) -> float | None:
    """A non-negative number from an event's data, else None (a bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0:
        return None
    return value


def business_day(at: datetime, tz: ZoneInfo) -> str:
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return at.astimezone(tz).date().isoformat()


def frt_bucket(minutes: float) -> int:
    for i, bound in enumerate(FRT_BUCKETS_MIN):
        if minutes <= bound:
            return i
    return len(FRT_BUCKETS_MIN)


def key_part(value) -> str:
    """A group value as part of a flat counter name: ``%``, ``.``, ``_``, ``$`` and control
    characters percent-encoded (so ``__`` only separates), none as ``-``."""
    if value is None or value == "":
        return "-"
    text = str(value)
    if text == "-":
        return "%2D"
    return "".join(f"%{ord(c):02X}" if c in "%._$" or ord(c) < 32 else c for c in text)


def money_key(group: str | None, value=None, metric: str = "") -> str:
    """``rv__{metric}`` (the scope's total) or ``rv_{prefix}__{value}__{metric}``."""
    return f"rv__{metric}" if group is None else f"rv_{MONEY_GROUPS[group]}__{key_part(value)}__{metric}"


def month_of(day: str) -> str:
    return day[:7]


def _as_datetime(value) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _epoch(at: datetime) -> float:
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return at.timestamp()


def event_order(event: dict) -> tuple:
    at = event["at"]
    return (_epoch(at), str(event["_id"]))


class Fold:
    """Pure: a sequence of events (in order) and the lead states before them → counter deltas."""

    def __init__(self, tz: ZoneInfo, states: dict[str, dict], leads: dict[str, dict]) -> None:
        self.tz = tz
        self.states = states
        self.leads = leads
        self.current: dict[str, dict] = {}
        self.cum: dict[str, dict[str, dict[str, int]]] = {}  # scope → day → {rep}__{field} → delta
        self.touched: set[str] = set()

    # ---------------------------------------------------------------- deltas
    def bump(self, team: str, rep: str, day: str, field: str, n: int = 1) -> None:
        keys = (field, f"{rep}__{field}") if field in REP_FIELDS and rep != "-" else (field,)
        for scope in (team, "*"):
            by_field = self.cum.setdefault(scope, {}).setdefault(day, {})
            for key in keys:
                by_field[key] = by_field.get(key, 0) + n

    def population(self, team: str, stage: str, n: int) -> None:
        for t in (team, "*"):
            _id = f"{t}:{stage}"
            doc = self.current.get(_id)
            if doc is None:
                doc = self.current[_id] = {"_id": _id, "meta": {"team_id": t, "stage": stage}, "inc": {"count": 0}}
            doc["inc"]["count"] += n

    # ---------------------------------------------------------------- one event
    def _state(self, event: dict) -> dict:
        lead_id = event["lead_id"]
        state = self.states.get(lead_id)
        if state is not None:
            return state
        lead = self.leads.get(lead_id) or {}
        team = lead.get("team_id") or "-"
        data = event.get("data") or {}
        if event["kind"] == "created":
            state = {"_id": lead_id, "team_id": team, "owner_id": None, "stage": None, "assigned_at": None, "responded": 1}
        else:
            # A lead from before the fold existed: adopt it in the stage it was in.
            stage = (data.get("from") if event["kind"] == "stage_changed" else None) or lead.get("stage") or "new"
            state = {"_id": lead_id, "team_id": team, "owner_id": lead.get("owner_id"), "stage": stage, "assigned_at": None, "responded": 1}
            self.population(team, stage, +1)
        self.states[lead_id] = state
        return state

    def money(self, team: str, day: str, groups: dict[str, object], metrics: dict[str, int]) -> None:
        """Money counters of one event on ``day``: the scope's totals and each group value's (the
        ``team`` group only in the company scope, where it tells the teams apart)."""
        for scope in (team, "*"):
            by_field = self.cum.setdefault(scope, {}).setdefault(day, {})
            for metric, n in metrics.items():
                if not n:
                    continue
                keys = [money_key(None, metric=metric)]
                keys += [money_key(g, v, metric) for g, v in groups.items() if g != "team" or scope == "*"]
                for key in keys:
                    by_field[key] = by_field.get(key, 0) + n

    def apply_money(self, event: dict) -> None:
        kind = event["kind"]
        data = event.get("data") or {}
        team = data.get("team_id") or "-"
        groups = {"rep": data.get("owner_id"), "source": data.get("source"), "channel": data.get("channel"), "campaign": data.get("campaign"), "team": team}
        if kind == "contract_signed":
            day = business_day(event["at"], self.tz)
            sale = data.get("sale") if data.get("sale") in SALES else "new"
            amount = int(data.get("amount_fen") or 0)
            self.money(team, day, {**groups, "month": month_of(day)}, {"signed_n": 1, "signed_fen": amount, f"{sale}_n": 1, f"{sale}_fen": amount})
            if data.get("renews_ended_on"):  # renewed after the old contract had ended: counted on its end day
                self.money(team, data["renews_ended_on"], {}, {"ending_renewed_n": 1})
        elif kind == "payment_recorded":
            received = _as_datetime(data.get("received_at")) or event["at"]
            day = business_day(received, self.tz)
            self.money(team, day, {**groups, "month": month_of(day)}, {"collected_fen": int(data.get("amount_fen") or 0), "payments_n": 1})
        elif kind == "contract_ended" and data.get("end_date"):
            self.money(team, data["end_date"], {}, {"ending_n": 1, "ending_renewed_n": 1 if data.get("renewed") else 0})

    def service_bump(self, team: str, handler, day: str, field: str, n: int = 1) -> None:
        """``svc_{field}`` for the team and the company, and ``{handler}__svc_{field}`` when known."""
        keys = [f"svc_{field}"] + ([f"{handler}__svc_{field}"] if isinstance(handler, str) and handler and handler != "-" else [])
        for scope in (team, "*"):
            by_field = self.cum.setdefault(scope, {}).setdefault(day, {})
            for key in keys:
                by_field[key] = by_field.get(key, 0) + n

    def apply_service(self, event: dict) -> None:
        """Ticket and survey events: counted under the lead's team (as the fold knows it, or as the
        lead is), never changing the lead's state."""
        kind = event["kind"]
        data = event.get("data") or {}
        lead_id = event["lead_id"]
        team = (self.states.get(lead_id) or self.leads.get(lead_id) or {}).get("team_id") or "-"
        day = business_day(event["at"], self.tz)
        handler = data.get("assignee_id")
        if kind == "ticket_opened":
            self.service_bump(team, None, day, "opened")
        elif kind == "ticket_assigned":
            self.service_bump(team, handler, day, "assigned")
        elif kind == "ticket_replied":
            seconds = _count(data.get("first_response_s"))
            if data.get("first_response") is True and seconds is not None:
                who = handler or event.get("actor_id")
                self.service_bump(team, who, day, "frt_n")
                self.service_bump(team, who, day, f"frt__{frt_bucket(seconds / 60)}")
        elif kind == "ticket_resolved":
            self.service_bump(team, handler, day, "resolved")
            seconds = _count(data.get("resolution_s"))
            if seconds is not None:
                self.service_bump(team, handler, day, "res_n")
                self.service_bump(team, handler, day, f"res__{bucket_of(seconds / 3600, RES_BUCKETS_H)}")
            if data.get("breached_first_response") is True or data.get("breached_resolution") is True:
                self.service_bump(team, handler, day, "resolved_breached")
        elif kind == "ticket_breached":
            if data.get("which") in BREACH_KINDS:
                self.service_bump(team, handler, day, f"breach__{data['which']}")
        elif kind == "ticket_reopened":
            self.service_bump(team, None, day, "reopened")
        elif kind == "ticket_closed":
            self.service_bump(team, None, day, "closed")
        elif kind == "survey_answered":
            who = data.get("handler_id")
            csat, nps = data.get("csat"), data.get("nps")
            if isinstance(csat, int) and not isinstance(csat, bool) and 1 <= csat <= 5:
                self.service_bump(team, who, day, "csat_n")
                self.service_bump(team, who, day, "csat_sum", csat)
            if isinstance(nps, int) and not isinstance(nps, bool) and 0 <= nps <= 10:
                self.service_bump(team, who, day, "nps_n")
                if nps >= 9:
                    self.service_bump(team, who, day, "nps_pro")
                elif nps <= 6:
                    self.service_bump(team, who, day, "nps_det")

    def apply(self, event: dict) -> None:
        kind = event.get("kind")
        if kind in MONEY_KINDS:
            self.apply_money(event)
            return
        if kind in SERVICE_KINDS:
            self.apply_service(event)
            return
        if kind not in ("created", "stage_changed", "followup", *OWNER_KINDS, *RELEASE_KINDS):
            return
        state = self._state(event)
        self.touched.add(state["_id"])
        data = event.get("data") or {}
        team = state["team_id"]
        day = business_day(event["at"], self.tz)
        at = _epoch(event["at"])
        if kind == "created":
            owner = event.get("actor_id") if event.get("actor_role") in ("rep", "manager") and data.get("source") == "manual" else None
            self.bump(team, owner or "-", day, "created")
            if state["stage"] is None:  # not adopted earlier
                state["stage"] = "new"
                self.population(team, "new", +1)
                self.bump(team, owner or "-", day, "entered__new")
            if owner:
                self._owned(state, owner, day, at)
        elif kind in OWNER_KINDS:
            owner = data.get("owner_id")
            if owner:
                self._owned(state, owner, day, at)
        elif kind in RELEASE_KINDS:
            state.update(owner_id=None, assigned_at=None, responded=1)
        elif kind == "stage_changed":
            src, dst = data.get("from") or state["stage"], data.get("to")
            if not dst or dst not in STAGES:
                return
            rep = state["owner_id"] or "-"
            self.bump(team, rep, day, f"entered__{dst}")
            if src:
                self.bump(team, rep, day, f"left__{src}")
                self.bump(team, rep, day, f"moves__{src}__{dst}")
                self.population(team, src, -1)
            self.population(team, dst, +1)
            state["stage"] = dst
            if dst in REASON_COUNTERS:
                # Per-reason running totals (server/services/reasons.py); a move from before the
                # catalogue carried free text only, and counts as "other", as an old client's does.
                code = data.get("reason_code")
                code = code if isinstance(code, str) and _REASON_CODE.match(code) else "other"
                self.bump(team, rep, day, f"{REASON_COUNTERS[dst]}{code}")
        elif kind == "followup":
            author = event.get("actor_id") or state["owner_id"] or "-"
            self.bump(team, author, day, "followups")
            if data.get("kind") == "visit":
                self.bump(team, author, day, "visits")
            if not state["responded"] and state["assigned_at"] is not None and state["owner_id"]:
                minutes = max(0.0, (at - state["assigned_at"]) / 60)
                self.bump(team, state["owner_id"], day, f"frt__{frt_bucket(minutes)}")
                self.bump(team, state["owner_id"], day, "frt_n")
                state["responded"] = 1

    def _owned(self, state: dict, owner: str, day: str, at: float) -> None:
        state.update(owner_id=owner, assigned_at=at, responded=0)
        self.bump(state["team_id"], owner, day, "received")


CUM_META = ("_id", "scope", "day", "first", "last", "seq")


def _next_day(day: str) -> str:
    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


def cum_plan(deltas: dict[str, dict[str, dict[str, int]]], heads: dict[str, dict]) -> dict[str, list[dict]]:
    """Pure: the running-total documents a batch of per-day deltas changes.

    For a scope whose totals run from day ``first`` to ``last`` (its head), the new total of day D
    is the old total of D plus the batch's deltas up to D, where the old total is nothing before
    ``first``, the day's document up to ``last``, and the head after it. Days without a document
    yet get one whole (``new``), existing ones an increment (``inc``), and the head is rewritten
    whole. Gaps are filled so that every day from ``first`` to ``last`` has its document.
    """
    plan: dict[str, list[dict]] = {"new": [], "inc": [], "heads": []}
    for scope, by_day in sorted(deltas.items()):
        days = sorted(d for d, fields in by_day.items() if fields)
        if not days:
            continue
        head = heads.get(f"{scope}:head")
        base = {k: v for k, v in (head or {}).items() if k not in CUM_META}
        first, last = (head["first"], head["last"]) if head else (None, None)
        day = days[0] if last is None else min(days[0], _next_day(last))
        end = max(days[-1], last or days[-1])
        prefix: dict[str, int] = {}
        while day <= end:
            for k, n in by_day.get(day, {}).items():
                prefix[k] = prefix.get(k, 0) + n
            if first is None or day < first:
                plan["new"].append({"_id": f"{scope}:{day}", "scope": scope, "day": day, **prefix})
            elif last is not None and day <= last:  # first and last are both set here
                if prefix:
                    plan["inc"].append({"_id": f"{scope}:{day}", "inc": dict(prefix)})
            else:
                plan["new"].append({"_id": f"{scope}:{day}", "scope": scope, "day": day, **_added(base, prefix)})
            day = _next_day(day)
        totals = _added(base, prefix)
        plan["heads"].append({"_id": f"{scope}:head", "scope": scope, "first": min(days[0], first or days[0]), "last": end, **totals})
    return plan


def _minus(a: dict, b: dict) -> dict[str, int]:
    return {k: int(v) - int(b.get(k) or 0) for k, v in a.items() if k not in CUM_META}


def _added(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    out = dict(a)
    for k, n in b.items():
        out[k] = out.get(k, 0) + n
    return out


@dataclass
class FoldResult:
    batch: str | None
    events: int
    recovered: bool = False


class StatsService:
    def __init__(
        self, *, stats_current, stats_cum, stats_overdue, stats_leads, stats_batches, stats_counters,
        lead_events_view, leads_view, tasks_view, leads: LeadService, clock: Clock, tz: ZoneInfo, batch_size: int = 500,
        stats_money=None, contracts_view=None,
    ) -> None:
        self._money = stats_money
        self._contracts = contracts_view
        self._events = lead_events_view  # read-only: the fold reads the timeline; its marks are written by LeadService
        self._leads = leads_view
        self._lead_service = leads
        self._current = stats_current
        self._cum = stats_cum
        self._overdue = stats_overdue
        self._tasks = tasks_view
        self._states = stats_leads
        self._batches = stats_batches
        self._counters = stats_counters
        self._clock = clock
        self.tz = tz
        self.batch_size = batch_size

    # ---------------------------------------------------------------- the fold, step by step
    async def claim(self, limit: int | None = None) -> tuple[str, list[dict], bool] | None:
        """Step 1: the batch left claimed by a crashed run, or a new one. ``None``: nothing to do."""
        stuck = await self._events.find_one({"fold.state": "claimed"}, {"fold": 1})
        if stuck is not None:
            batch = stuck["fold"]["batch"]
            return batch, await self._events.find({"fold.batch": batch}).to_list(None), True
        ids = [e["_id"] for e in await self._events.find({"fold": None}, {"_id": 1}).limit(limit or self.batch_size).to_list(None)]
        if not ids:
            return None
        batch = str(ObjectId())
        await self._lead_service.claim_events_for_fold(ids, batch)
        events = await self._events.find({"_id": {"$in": ids}, "fold.batch": batch}).to_list(None)
        return batch, events, False

    async def prepare(self, batch: str, events: list[dict], now: datetime) -> dict:
        """Step 2: the batch's deltas, computed once and recorded whole before any is applied."""
        record = await self._batches.find_one({"_id": batch})
        if record is not None:
            return record
        events = sorted(events, key=event_order)
        lead_ids = list({e["lead_id"] for e in events})
        states = {s["_id"]: s for s in await self._states.find({"_id": {"$in": lead_ids}}).to_list(None)} if lead_ids else {}
        missing = [i for i in lead_ids if i not in states]
        leads = {d["_id"]: d for d in await self._leads.find({"_id": {"$in": missing}}, {"team_id": 1, "owner_id": 1, "stage": 1}).to_list(None)} if missing else {}
        fold = Fold(self.tz, states, leads)
        for event in events:
            fold.apply(event)
        heads = await self.cum_heads(fold.cum)
        seq = await self.next_seq()
        record = {
            "_id": batch, "seq": seq, "state": "prepared", "created_at": now,
            "event_ids": [e["_id"] for e in events],
            "current": list(fold.current.values()),
            "cum": cum_plan(fold.cum, heads),
            "leads": [fold.states[i] for i in sorted(fold.touched)],
        }
        try:
            await self._batches.insert_one(record)
        except DuplicateKeyError:
            return await self._batches.find_one({"_id": batch})
        return record

    async def apply(self, record: dict) -> None:
        """Step 3: every delta once per counter document (the ``seq`` guard), lead states whole."""
        seq = record["seq"]
        cum = record["cum"]
        ops = [UpdateOne({"_id": d["_id"], "seq": {"$lt": seq}}, {"$inc": d["inc"], "$set": {"seq": seq}}) for d in cum["inc"]]
        ops += [
            UpdateOne({"_id": d["_id"], "seq": {"$lt": seq}}, {"$set": {**{k: v for k, v in d.items() if k != "_id"}, "seq": seq}}, upsert=True)
            for d in (*cum["new"], *cum["heads"])
        ]
        await _bulk_ignoring_duplicates(self._cum, ops)
        ops = [
            UpdateOne({"_id": d["_id"], "seq": {"$lt": seq}}, {"$inc": d["inc"], "$set": {**d["meta"], "seq": seq}}, upsert=True)
            for d in record["current"]
        ]
        await _bulk_ignoring_duplicates(self._current, ops)
        if record["leads"]:
            await self._states.bulk_write([ReplaceOne({"_id": s["_id"]}, s, upsert=True) for s in record["leads"]], ordered=False)
        await self._batches.update_one({"_id": record["_id"]}, {"$set": {"state": "applied"}})

    async def finish(self, record: dict) -> None:
        """Step 4: the events are folded; the record is no longer needed."""
        if record["event_ids"]:
            await self._lead_service.mark_events_folded(record["event_ids"], record["_id"])
        await self._batches.delete_one({"_id": record["_id"]})

    async def fold_once(self, now: datetime, limit: int | None = None) -> FoldResult:
        claimed = await self.claim(limit)
        if claimed is None:
            return FoldResult(None, 0)
        batch, events, recovered = claimed
        record = await self.prepare(batch, events, now)
        if record["state"] != "applied":
            await self.apply(record)
        await self.finish(record)
        return FoldResult(batch, len(record["event_ids"]), recovered)

    async def fold(self, now: datetime, max_batches: int = 20) -> dict:
        folded = batches = recovered = 0
        for _ in range(max_batches):
            result = await self.fold_once(now)
            if result.batch is None:
                break
            batches += 1
            folded += result.events
            recovered += int(result.recovered)
        return {"batches": batches, "events": folded, "recovered": recovered}

    async def next_seq(self) -> int:
        doc = await self._counters.find_one_and_update({"_id": SEQ_ID}, {"$inc": {"n": 1}}, upsert=True, return_document=ReturnDocument.AFTER)
        return int(doc["n"])

    # ---------------------------------------------------------------- rebuild from the sources
    async def rebuild(self, now: datetime) -> dict:
        """Recompute every counter from ``lead_events`` and ``leads`` (run under the fold's lease).

        Events are read first and exactly those are marked folded at the end; events written while
        this runs stay unmarked and the next fold counts them. Leads with no event at all (data
        from before the fold) are adopted in their current stage and owner.
        """
        events = await self._events.find({}, {"_id": 1, "lead_id": 1, "kind": 1, "at": 1, "actor_id": 1, "actor_role": 1, "data": 1}).to_list(None)
        events.sort(key=event_order)
        leads = {d["_id"]: d for d in await self._leads.find({}, {"team_id": 1, "owner_id": 1, "stage": 1}).to_list(None)}
        fold = Fold(self.tz, {}, leads)
        for event in events:
            fold.apply(event)
        for lead_id, lead in leads.items():
            if lead_id not in fold.states:
                team, stage = lead.get("team_id") or "-", lead.get("stage") or "new"
                fold.states[lead_id] = {"_id": lead_id, "team_id": team, "owner_id": lead.get("owner_id"), "stage": stage, "assigned_at": None, "responded": 1}
                fold.population(team, stage, +1)
        seq = await self.next_seq()
        current = [{"_id": d["_id"], **d["meta"], **d["inc"], "seq": seq} for d in fold.current.values()]
        plan = cum_plan(fold.cum, {})
        cum = [{**d, "seq": seq} for d in (*plan["new"], *plan["heads"])]
        # What reports read is replaced in place (heads last), so a report during a rebuild sees old
        # or new totals, never an empty collection; the fold's own memory is simply rewritten.
        await _replace_all(self._current, current)
        await _replace_all(self._cum, cum)
        await self._states.delete_many({})
        await self._batches.delete_many({})
        for chunk in _chunks(list(fold.states.values()), 5000):
            await self._states.insert_many(chunk, ordered=False)
        ids = [e["_id"] for e in events]
        for chunk in _chunks(ids, 5000):
            await self._lead_service.mark_events_folded(chunk, f"rebuild:{seq}")
        ltv = await self.rebuild_lifetime_values() if self._contracts is not None else 0
        return {"events": len(events), "leads": len(leads), "current_docs": len(current), "cum_docs": len(cum), "lifetime_values": ltv}

    async def rebuild_lifetime_values(self) -> int:
        """Every lead's ``lifetime_value_fen`` recomputed from the payments on its contracts (the
        payment path adds each payment as it is recorded; this corrects a crash between the two)."""
        values: dict[str, int] = {}
        async for c in self._contracts.find({"status": {"$in": ["active", "ended"]}}, {"lead_id": 1, "payments": 1}):
            paid = sum(int(p.get("amount_fen") or 0) for p in c.get("payments") or [])
            if paid:
                values[c["lead_id"]] = values.get(c["lead_id"], 0) + paid
        stale = [d["_id"] for d in await self._leads.find({"lifetime_value_fen": {"$gt": 0}}, {"_id": 1}).to_list(None) if d["_id"] not in values]
        await self._lead_service.set_lifetime_values([*values.items(), *((i, 0) for i in stale)])
        return len(values)

    # ---------------------------------------------------------------- money now: receivables and cohorts
    async def count_money(self, now: datetime, horizon_months: int = 12) -> dict:
        """The ``count_money`` job: per team (and ``*``), what is outstanding and overdue now on
        signed contracts (per rep, source, channel, campaign, month signed and team), and the
        monthly customer cohorts (by the month of a customer's first contract: how many still had
        a contract running 0…12 months later). One document per scope in ``stats_money``, replaced
        whole each run, so the revenue and retention reports read one document for them."""
        today = date.fromisoformat(business_day(now, self.tz))
        this_month = today.isoformat()[:7]
        contracts = await self._contracts.find(
            {"status": {"$in": ["active", "ended"]}},
            {"lead_id": 1, "team_id": 1, "owner_id": 1, "amount_fen": 1, "payment_plan": 1, "start_date": 1, "end_date": 1, "activated_at": 1},
        ).to_list(None)
        lead_ids = sorted({c["lead_id"] for c in contracts})
        sources: dict[str, dict] = {}
        for chunk in _chunks(lead_ids, 5000):
            for d in await self._leads.find({"_id": {"$in": chunk}}, {"source": 1}).to_list(None):
                sources[d["_id"]] = d.get("source") or {}
        recv: dict[str, dict[str, dict[str, list[int]]]] = {}
        totals: dict[str, list[int]] = {}
        spans: dict[str, list[tuple[str, str, str]]] = {}  # lead → (start, end, team)
        for c in contracts:
            team = c.get("team_id") or "-"
            plan = c.get("payment_plan") or []
            paid = sum(int(i.get("paid_fen") or 0) for i in plan)
            outstanding = max(0, int(c.get("amount_fen") or 0) - paid)
            overdue = sum(int(i["amount_fen"]) - int(i.get("paid_fen") or 0) for i in plan if i["due_date"] < today.isoformat())
            spans.setdefault(c["lead_id"], []).append((c.get("start_date") or "", c.get("end_date") or "", team))
            if not outstanding:
                continue
            src = sources.get(c["lead_id"], {})
            signed = _as_datetime(c.get("activated_at"))
            groups = {
                "rep": c.get("owner_id") or "-", "team": team, "source": src.get("kind") or "-", "channel": src.get("channel") or "-",
                "campaign": src.get("campaign") or "-", "month": business_day(signed, self.tz)[:7] if signed else (c.get("start_date") or "")[:7] or "-",
            }
            for scope in (team, "*"):
                t = totals.setdefault(scope, [0, 0])
                t[0] += outstanding
                t[1] += overdue
                for g, v in groups.items():
                    row = recv.setdefault(scope, {}).setdefault(g, {}).setdefault(str(v), [0, 0])
                    row[0] += outstanding
                    row[1] += overdue
        cohorts: dict[str, dict[str, list]] = {}
        for runs in spans.values():
            runs = sorted(r for r in runs if r[0])
            if not runs:
                continue
            first = runs[0][0][:7]
            team = runs[0][2]
            months = min(horizon_months, _months_between(first, this_month))
            active = [int(any(s[:7] <= m and e[:7] >= m for s, e, _ in runs)) for m in (_add_months(first, n) for n in range(months + 1))]
            for scope in (team, "*"):
                size, counts = cohorts.setdefault(scope, {}).setdefault(first, [0, [0] * (horizon_months + 1)])
                cohorts[scope][first][0] = size + 1
                for n, a in enumerate(active):
                    counts[n] += a
        scopes = {"*", *totals, *cohorts}
        docs = []
        for scope in sorted(scopes):
            docs.append({
                "_id": scope, "computed_at": now, "today": today.isoformat(),
                "total": totals.get(scope, [0, 0]),
                "receivables": {g: sorted([v, *row] for v, row in values.items()) for g, values in recv.get(scope, {}).items()},
                "cohorts": [[month, size, active[:_months_between(month, this_month) + 1]] for month, (size, active) in sorted(cohorts.get(scope, {}).items())],
            })
        await _replace_all(self._money, docs)
        return {"contracts": len(contracts), "teams": len(scopes) - 1}

    async def money_now(self, scope: str) -> dict:
        return await self._money.find_one({"_id": scope}) or {}

    # ---------------------------------------------------------------- reading (reports)
    async def cum_heads(self, deltas: dict) -> dict[str, dict]:
        ids = [f"{scope}:head" for scope in deltas]
        return {d["_id"]: d for d in await self._cum.find({"_id": {"$in": ids}}).to_list(None)} if ids else {}

    async def totals(self, scope: str, start: date, end: date) -> tuple[dict[str, int], dict[str, int]]:
        """The counters of a scope from ``start`` to ``end`` (business days), and from ``start`` to
        the last event (what changed since the period began), in one read of at most three
        documents: running totals at ``end`` and at the head, minus those before ``start``."""
        before, after = (start - timedelta(days=1)).isoformat(), end.isoformat()
        ids = [f"{scope}:head", f"{scope}:{before}", f"{scope}:{after}"]
        docs = {d["_id"]: d for d in await self._cum.find({"_id": {"$in": ids}}).to_list(None)}
        head = docs.get(f"{scope}:head")
        if head is None:
            return {}, {}

        def at(day: str) -> dict:
            if day >= head["last"]:
                return head
            if day < head["first"]:
                return {}
            doc = docs.get(f"{scope}:{day}")  # every day from first to last has one ...
            if doc is None:  # ... except while rebuild-stats rewrites them
                log.warning("running totals missing", extra={"scope": scope, "day": day})
            return doc or {}

        low = at(before)
        return _minus(at(after), low), _minus(head, low)

    async def period_totals(self, scopes: list[str], start: date, end: date) -> dict[str, dict[str, int]]:
        """``totals(scope, start, end)[0]`` for several scopes in one read (at most three documents
        each, by ``_id``): the service report's teams."""
        before, after = (start - timedelta(days=1)).isoformat(), end.isoformat()
        ids = [f"{scope}:{d}" for scope in scopes for d in ("head", before, after)]
        docs = {d["_id"]: d for d in await self._cum.find({"_id": {"$in": ids}}).to_list(None)} if ids else {}
        out: dict[str, dict[str, int]] = {}
        for scope in scopes:
            head = docs.get(f"{scope}:head")
            if head is None:
                out[scope] = {}
                continue

            def at(day: str, head: dict = head, scope: str = scope) -> dict:
                if day >= head["last"]:
                    return head
                if day < head["first"]:
                    return {}
                return docs.get(f"{scope}:{day}") or {}

            out[scope] = _minus(at(after), at(before))
        return out

    # ---------------------------------------------------------------- overdue tasks
    async def count_overdue(self, now: datetime) -> dict:
        """The ``count_overdue_tasks`` job: open tasks past ``due_at`` per assignee, one document
        per team (``_id`` = team) and one for the company (``*``), replaced whole each run.

        A report reads one of these documents instead of the overdue tasks themselves, whose number
        grows with the data (5,000 overdue tasks made the company-wide reps report take 595 ms).
        The counts are as of the last run (``counted_at``, every minute).
        """
        counts: dict[str, dict[str, int]] = {"*": {}}
        # A find, not an aggregation: nx-27017's $match drops datetime ranges (docs/mongodb-compat.md).
        async for task in self._tasks.find({"status": "open", "due_at": {"$lt": now}}, {"assignee_id": 1, "team_id": 1}):
            rep = str(task.get("assignee_id") or "-")
            for scope in (task.get("team_id") or "-", "*"):
                by_rep = counts.setdefault(scope, {})
                by_rep[rep] = by_rep.get(rep, 0) + 1
        docs = [{"_id": scope, "counted_at": now, "counts": by_rep} for scope, by_rep in counts.items()]
        await _replace_all(self._overdue, docs)
        return {"overdue": sum(counts["*"].values()), "teams": len(counts) - 1}

    async def overdue(self, scope: str) -> tuple[dict[str, int], datetime | None]:
        doc = await self._overdue.find_one({"_id": scope})
        return (doc.get("counts") or {}, doc.get("counted_at")) if doc else ({}, None)

    async def current_docs(self, ids: list[str]) -> list[dict]:
        return await self._current.find({"_id": {"$in": ids}}).to_list(None) if ids else []


async def _bulk_ignoring_duplicates(collection, ops: list) -> None:
    """Apply guarded upserts; a duplicate key means "this document already has this batch"."""
    if not ops:
        return
    try:
        await collection.bulk_write(ops, ordered=False)
    except BulkWriteError as exc:
        other = [e for e in exc.details.get("writeErrors", []) if e.get("code") != 11000]
        if other:
            raise


async def _replace_all(collection, docs: list[dict]) -> None:
    """Make ``collection`` hold exactly ``docs``: each replaced by ``_id``, then the others deleted."""
    for chunk in _chunks(docs, 1000):
        await collection.bulk_write([ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in chunk], ordered=False)
    keep = {d["_id"] for d in docs}
    stale = [d["_id"] for d in await collection.find({}, {"_id": 1}).to_list(None) if d["_id"] not in keep]
    for chunk in _chunks(stale, 5000):
        await collection.delete_many({"_id": {"$in": chunk}})


def _months_between(a: str, b: str) -> int:
    """Whole months from month ``a`` to month ``b`` (``YYYY-MM``); 0 when b is not later."""
    return max(0, (int(b[:4]) - int(a[:4])) * 12 + int(b[5:7]) - int(a[5:7]))


def _add_months(month: str, n: int) -> str:
    y, m = divmod(int(month[:4]) * 12 + int(month[5:7]) - 1 + n, 12)
    return f"{y:04d}-{m + 1:02d}"


def _chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


__all__ = ["FRT_BUCKETS_MIN", "RES_BUCKETS_H", "SERVICE_KINDS", "bucket_of", "MONEY_GROUPS", "REP_FIELDS", "SALES", "Fold", "StatsService", "business_day", "cum_plan", "frt_bucket", "key_part", "money_key"]
