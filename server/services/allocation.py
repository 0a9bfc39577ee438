"""Lead allocation: rules pick an owner for each new lead, fairly and explainably.

Rules are tried in ``priority`` order (lower first) within the lead's team; a rule matches when
the lead has any of its ``tags_any`` (or the list is empty) and, if given, came from its ``source``
form. Strategies:

- ``round_robin``: a persistent turn counter per rule, advanced atomically (``$inc``), so several
  instances hand out distinct turns;
- ``weighted``: smooth weighted round-robin, computed from the same counter, so a 3:1 weighting
  gives exactly 3:1 over any window of 4 turns;
- ``least_loaded``: fewest open leads, ties to the member who has waited longest.

Members who are inactive, at capacity, over the rule's daily quota or outside its working hours
(business time zone) are skipped, and the skip is written into the reason. A lead no rule matches
goes to its team's pool; a lead whose rule has nobody available stays waiting and the team's
managers are told (once a day per lead). Every assignment is a conditional update
(``owner_id`` still null), so a lead is never assigned twice, whoever runs the sweep.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any

from bson import ObjectId
from pydantic import ValidationError
from pymongo import ReturnDocument

from server.actor import SYSTEM, Actor, require_role
from server.clock import Clock
from server.errors import Invalid, NotFound, VersionMismatch, detail, validation_details
from server.i18n import LANGUAGES
from server.ids import maybe_oid, parse_oid
from server.paging import Page, paginate
from server.schemas.allocation import PreviewIn, RuleCreate, RuleUpdate
from server.services.audit import AuditService
from server.services.leads import LeadService, event
from server.services.lifecycle import OPEN_STAGES
from server.services.users import OwnerTally, UserService
from server.services.notifications import NotificationService, notification


log = logging.getLogger("mpcrm.allocation")


@dataclass
class Member:
    id: str
    name: str
    active: bool
    capacity: int
    open_leads: int
    assigned_today: int
    last_assigned_at: datetime | None
    team_id: str | None


@dataclass
class Decision:
    lead: dict
    rule: dict | None
    owner: Member | None
    strategy: str
    reason: dict[str, str]  # {"zh-CN": ..., "en": ...}: see Reason
    turn_used: bool = False


@dataclass
class SweepStats:
    considered: int = 0
    assigned: int = 0
    pooled: int = 0
    waiting: int = 0
    lost_races: int = 0
    by_owner: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "by_owner"}


def swrr_order(weights: list[int]) -> list[int]:
    """One period of smooth weighted round-robin (nginx's algorithm): member indexes, in turn order."""
    total = sum(weights)
    current = [0] * len(weights)
    order = []
    for _ in range(total):
        for i, w in enumerate(weights):
            current[i] += w
        best = max(range(len(weights)), key=lambda i: (current[i], -i))
        current[best] -= total
        order.append(best)
    return order


# The phrases of an allocation reason, in both languages. A reason is stored in both
# ({"zh-CN": ..., "en": ...}) on the lead's assignment, the timeline event and the preview, and the
# API answers in the caller's Accept-Language (server/i18n.py).
REASON_TEXTS: dict[str, dict[str, str]] = {
    "rule": {"zh-CN": "规则 {rule}：{why}", "en": "rule {rule} {why}"},
    "matched_tag": {"zh-CN": "匹配标签 {tag}", "en": "matched tag {tag}"},
    "matched_tag_source": {"zh-CN": "匹配标签 {tag} 和来源 {source}", "en": "matched tag {tag} and source {source}"},
    "matched_source": {"zh-CN": "匹配来源 {source}", "en": "matched source {source}"},
    "matches_all": {"zh-CN": "匹配所有线索", "en": "matches every lead"},
    "no_match": {"zh-CN": "不匹配这些标签和来源", "en": "does not match these tags and source"},
    "no_members": {"zh-CN": "规则没有成员", "en": "it has no members"},
    "nobody_available": {"zh-CN": "无人可分配", "en": "nobody available"},
    "least_loaded": {"zh-CN": "负载最低：{open}/{capacity} 条未结线索", "en": "least loaded: {open}/{capacity} open leads"},
    "weighted": {"zh-CN": "按权重 {weight}/{total}，第 {turn}/{turns} 轮", "en": "weighted {weight}/{total}, turn {turn} of {turns}"},
    "round_robin": {"zh-CN": "轮询第 {turn}/{turns} 位", "en": "round-robin turn {turn} of {turns}"},
    "skipped": {"zh-CN": "跳过 {items}", "en": "skipped {items}"},
    "skipped_item": {"zh-CN": "{name}（{problem}）", "en": "{name}: {problem}"},
    "pool": {"zh-CN": "没有匹配的分配规则，已进入团队公海", "en": "no allocation rule matched; sent to the team's pool"},
    # why a member was skipped
    "inactive": {"zh-CN": "已停用", "en": "inactive"},
    "moved_team": {"zh-CN": "已调至其他团队", "en": "moved to another team"},
    "at_capacity": {"zh-CN": "已达保有量上限 {open}/{capacity}", "en": "at capacity {open}/{capacity}"},
    "daily_quota": {"zh-CN": "今日配额已满 {assigned}/{quota}", "en": "daily quota {assigned}/{quota} reached"},
    "off_hours": {"zh-CN": "不在工作时间", "en": "outside working hours"},
}
_SEPARATOR = {"zh-CN": "；", "en": "; "}
_LIST_SEPARATOR = {"zh-CN": "、", "en": ", "}

Phrase = tuple[str, dict[str, Any]]


def _say(language: str, phrase: Phrase) -> str:
    code, params = phrase
    return REASON_TEXTS[code][language].format(**params)


@dataclass
class Reason:
    """Why a lead went where it went, as phrases (code + params), written out in every language."""

    rule: str | None = None
    why: Phrase | None = None
    steps: list[Phrase] = field(default_factory=list)
    skipped: list[tuple[str, Phrase]] = field(default_factory=list)  # (member name, problem)

    def text(self, language: str) -> str:
        parts = []
        if self.rule is not None and self.why is not None:
            parts.append(REASON_TEXTS["rule"][language].format(rule=self.rule, why=_say(language, self.why)))
        parts += [_say(language, step) for step in self.steps]
        if self.skipped:
            items = _LIST_SEPARATOR[language].join(
                REASON_TEXTS["skipped_item"][language].format(name=name, problem=_say(language, problem)) for name, problem in self.skipped
            )
            parts.append(REASON_TEXTS["skipped"][language].format(items=items))
        return _SEPARATOR[language].join(parts)

    def texts(self) -> dict[str, str]:
        return {language: self.text(language) for language in LANGUAGES}


def rule_matches(rule: dict, lead: dict) -> Phrase | None:
    """Why the rule matches the lead (a phrase for the reason), or None."""
    match = rule.get("match") or {}
    source = match.get("source")
    if source and (lead.get("source") or {}).get("form_slug") != source:
        return None
    wanted = match.get("tags_any") or []
    if wanted:
        hit = [t for t in wanted if t in (lead.get("tags") or [])]
        if not hit:
            return None
        return ("matched_tag_source", {"tag": hit[0], "source": source}) if source else ("matched_tag", {"tag": hit[0]})
    return ("matched_source", {"source": source}) if source else ("matches_all", {})


class AllocationService:
    def __init__(
        self, *, allocation_rules, leads_view, users_view, clock: Clock, leads: LeadService, users: UserService,
        notifications: NotificationService, audit: AuditService, tz,
    ) -> None:
        self._rules = allocation_rules
        self._leads_col = leads_view  # read-only: leads waiting for an owner; LeadService writes them
        self._users = users_view  # read-only: members' loads; UserService keeps their counters
        self._user_service = users
        self._clock = clock
        self._leads = leads
        self._notifications = notifications
        self._audit = audit
        self._tz = tz
        self._background: set[asyncio.Task] = set()

    # ------------------------------------------------------------ rules
    async def create_rule(self, actor: Actor, data: RuleCreate) -> dict:
        require_role(actor, "admin")
        await self._check_members(data.team_id, data.members)
        now = self._clock.now()
        doc = {**data.model_dump(), "turn": 0, "version": 1, "created_at": now, "updated_at": now, "created_by": actor.id}
        result = await self._rules.insert_one(doc)
        doc["_id"] = result.inserted_id
        await self._audit.record(actor, "allocation_rule.create", target_type="allocation_rule", target_id=str(doc["_id"]))
        return doc

    async def update_rule(self, actor: Actor, rule_id: str, data: RuleUpdate, version: int) -> dict:
        require_role(actor, "admin")
        current = await self._rules.find_one({"_id": parse_oid(rule_id, "allocation_rule.not_found")})
        if current is None:
            raise NotFound("allocation_rule.not_found")
        if current["version"] != version:
            raise VersionMismatch("allocation_rule.version_mismatch")
        changes = data.model_dump(exclude_unset=True, exclude={"version"})
        merged = {**current, **changes}
        try:  # the merged rule must still be a valid rule
            RuleCreate.model_validate({k: merged.get(k) for k in RuleCreate.model_fields if k in merged})
        except ValidationError as exc:
            raise Invalid("request.invalid", details=validation_details(exc)) from None
        await self._check_members(merged["team_id"], merged.get("members") or [])
        doc = await self._rules.find_one_and_update(
            {"_id": current["_id"], "version": version},
            {**({"$set": changes} if changes else {}), "$currentDate": {"updated_at": True}, "$inc": {"version": 1}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            raise VersionMismatch("allocation_rule.version_mismatch")
        await self._audit.record(actor, "allocation_rule.update", target_type="allocation_rule", target_id=rule_id, details={"fields": sorted(changes)})
        return doc

    async def delete_rule(self, actor: Actor, rule_id: str) -> None:
        require_role(actor, "admin")
        result = await self._rules.delete_one({"_id": parse_oid(rule_id, "allocation_rule.not_found")})
        if result.deleted_count == 0:
            raise NotFound("allocation_rule.not_found")
        await self._audit.record(actor, "allocation_rule.delete", target_type="allocation_rule", target_id=rule_id)

    async def list_rules(self, actor: Actor, team_id: str | None, limit: int, cursor: str | None) -> Page:
        require_role(actor, "admin", "manager")
        filter_: dict[str, Any] = {}
        if team_id:
            filter_["team_id"] = team_id
        if not actor.is_admin:
            filter_["team_id"] = actor.team_id or "-"
        return await paginate(self._rules, filter_, limit=limit, cursor=cursor)

    async def _check_members(self, team_id: str, members: list[str]) -> None:
        oids = [maybe_oid(m) for m in members]
        if None in oids:
            raise Invalid("allocation_rule.bad_members", details=[detail("members", "bad_id", text="not_a_user_id")])
        if not members:
            return
        found = await self._users.find({"_id": {"$in": oids}}, {"team_id": 1, "role": 1}).to_list(None)
        ok = {str(u["_id"]) for u in found if u.get("team_id") == team_id and u.get("role") in ("rep", "manager")}
        outsiders = [m for m in members if m not in ok]
        if outsiders:
            raise Invalid("allocation_rule.bad_members", details=[detail("members", "not_in_team", text="members_outside_team", value=",".join(outsiders), members=", ".join(outsiders))])

    # ------------------------------------------------------------ preview
    async def preview(self, actor: Actor, rule_id: str, data: PreviewIn) -> dict:
        require_role(actor, "admin", "manager")
        rule = await self._rules.find_one({"_id": parse_oid(rule_id, "allocation_rule.not_found")})
        if rule is None or (not actor.is_admin and rule["team_id"] != actor.team_id):
            raise NotFound("allocation_rule.not_found")
        lead = {"tags": data.tags, "source": {"form_slug": data.source}, "team_id": rule["team_id"]}
        why = rule_matches(rule, lead)
        if why is None:
            return {"matched": False, "rule_id": str(rule["_id"]), "reason": Reason(rule["name"], ("no_match", {})).texts()}
        now = self._clock.now()
        members = await self._members([rule], now)
        owner, reason = self._pick(rule, rule.get("turn", 0) + 1, members, now, why)
        return {
            "matched": True, "rule_id": str(rule["_id"]), "strategy": rule["strategy"], "reason": reason,
            "owner_id": owner.id if owner else None, "owner_name": owner.name if owner else None,
        }

    # ------------------------------------------------------------ allocation
    async def sweep(self, now: datetime, batch_size: int = 500, max_batches: int = 40) -> dict:
        """Allocate every lead still waiting, oldest first, in batches."""
        stats = SweepStats()
        seen: list[str] = []  # leads already tried this run that stay waiting (nobody available yet)
        for _ in range(max_batches):
            filter_: dict[str, Any] = {"awaiting_allocation": True}
            if seen:
                filter_["_id"] = {"$nin": seen}
            waiting = await self._leads_col.find(filter_).sort("created_at", 1).limit(batch_size).to_list(None)
            if not waiting:
                break
            await self.allocate(waiting, now, stats)
            seen.extend(d["_id"] for d in waiting)
        return stats.as_dict()

    async def allocate_lead(self, lead_id: str) -> dict:
        """Right after capture: the same path as the sweep, for one lead."""
        lead = await self._leads_col.find_one({"_id": lead_id, "awaiting_allocation": True})
        stats = SweepStats()
        if lead is not None:
            await self.allocate([lead], self._clock.now(), stats)
        return stats.as_dict()

    def allocate_soon(self, lead_id: str) -> None:
        """Allocate a just-captured lead in the background, after the response; the sweep is the
        safety net if this instance dies first."""
        task = asyncio.get_running_loop().create_task(self.allocate_lead(lead_id))
        self._background.add(task)

        def done(t: asyncio.Task) -> None:
            self._background.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.warning("allocation after capture failed; the sweep will retry", exc_info=t.exception())

        task.add_done_callback(done)

    async def allocate(self, leads: list[dict], now: datetime, stats: SweepStats) -> None:
        """Rules and members are read once per batch, turns reserved once per rule; each lead is one
        conditional write; events, notifications and member counters are written in bulk."""
        stats.considered += len(leads)
        teams = sorted({lead["team_id"] for lead in leads if lead.get("team_id")})
        rules = await self._rules.find({"team_id": {"$in": teams}, "active": True}).sort("priority", 1).to_list(None) if teams else []
        members = await self._members(rules, now)
        by_rule: dict[Any, list[tuple[dict, Phrase]]] = {}
        decisions: list[Decision] = []
        for lead in leads:
            for rule in rules:
                if rule["team_id"] == lead.get("team_id"):
                    why = rule_matches(rule, lead)
                    if why:
                        by_rule.setdefault(rule["_id"], []).append((lead, why))
                        break
            else:
                decisions.append(Decision(lead, None, None, "pool", Reason(steps=[("pool", {})]).texts()))
        rules_by_id = {r["_id"]: r for r in rules}
        for rule_id, group in by_rule.items():
            rule = rules_by_id[rule_id]
            first_turn = 1
            if rule["strategy"] in ("round_robin", "weighted"):
                updated = await self._rules.find_one_and_update({"_id": rule_id}, {"$inc": {"turn": len(group)}}, projection={"turn": 1}, return_document=ReturnDocument.AFTER)
                first_turn = updated["turn"] - len(group) + 1
            for offset, (lead, why) in enumerate(group):
                owner, reason = self._pick(rule, first_turn + offset, members, now, why)
                if owner is not None:
                    owner.open_leads += 1
                    owner.assigned_today += 1
                    owner.last_assigned_at = now
                decisions.append(Decision(lead, rule, owner, rule["strategy"], reason))
        await self._apply(decisions, now, stats)

    async def _members(self, rules: list[dict], now: datetime) -> dict[str, Member]:
        ids = {m for r in rules for m in r.get("members") or []}
        if not ids:
            return {}
        today = self._today(now)
        docs = await self._users.find(
            {"_id": {"$in": [ObjectId(i) for i in ids if maybe_oid(i)]}},
            {"name": 1, "active": 1, "capacity": 1, "open_leads": 1, "assigned": 1, "last_assigned_at": 1, "team_id": 1},
        ).to_list(None)
        return {
            str(d["_id"]): Member(
                id=str(d["_id"]), name=d.get("name", ""), active=bool(d.get("active")), capacity=d.get("capacity", 0),
                open_leads=d.get("open_leads", 0), assigned_today=(d.get("assigned") or {}).get(today, 0),
                last_assigned_at=d.get("last_assigned_at"), team_id=d.get("team_id"),
            )
            for d in docs
        }

    def _today(self, now: datetime) -> str:
        return now.astimezone(self._tz).date().isoformat()

    def _unavailable(self, rule: dict, member: Member | None, now: datetime) -> Phrase | None:
        if member is None or not member.active:
            return ("inactive", {})
        if member.team_id != rule["team_id"]:
            return ("moved_team", {})
        if member.open_leads >= member.capacity:
            return ("at_capacity", {"open": member.open_leads, "capacity": member.capacity})
        quota = rule.get("daily_quota")
        if quota and member.assigned_today >= quota:
            return ("daily_quota", {"assigned": member.assigned_today, "quota": quota})
        hours = rule.get("working_hours")
        if hours:
            local = now.astimezone(self._tz)
            start, end = (time.fromisoformat(hours["start"]), time.fromisoformat(hours["end"]))
            if local.isoweekday() not in hours["days"] or not (start <= local.time() < end):
                return ("off_hours", {})
        return None

    def _pick(self, rule: dict, turn: int, members: dict[str, Member], now: datetime, why: Phrase) -> tuple[Member | None, dict[str, str]]:
        """The member whose turn it is, and why, in every language."""
        ids = rule.get("members") or []
        reason = Reason(rule["name"], why)

        def check(member_id: str) -> Member | None:
            member = members.get(member_id)
            problem = self._unavailable(rule, member, now)
            if problem:
                item = (member.name if member else member_id, problem)
                if item not in reason.skipped:
                    reason.skipped.append(item)
                return None
            return member

        def answer(member: Member | None, step: Phrase) -> tuple[Member | None, dict[str, str]]:
            reason.steps.append(step)
            return member, reason.texts()

        if not ids:
            return answer(None, ("no_members", {}))
        strategy = rule["strategy"]
        if strategy == "least_loaded":
            available = [m for m in (check(i) for i in ids) if m is not None]
            if not available:
                return answer(None, ("nobody_available", {}))
            epoch = datetime.min.replace(tzinfo=now.tzinfo)
            best = min(available, key=lambda m: (m.open_leads, m.last_assigned_at or epoch, ids.index(m.id)))
            return answer(best, ("least_loaded", {"open": best.open_leads, "capacity": best.capacity}))
        if strategy == "weighted":
            weights = rule.get("weights") or [1] * len(ids)
            order = swrr_order(weights)
            total = len(order)
            for k in range(total):
                position = (turn - 1 + k) % total
                member = check(ids[order[position]])
                if member is not None:
                    w = weights[order[position]]
                    return answer(member, ("weighted", {"weight": w, "total": sum(weights), "turn": position + 1, "turns": total}))
            return answer(None, ("nobody_available", {}))
        n = len(ids)
        for k in range(n):
            position = (turn - 1 + k) % n
            member = check(ids[position])
            if member is not None:
                return answer(member, ("round_robin", {"turn": position + 1, "turns": n}))
        return answer(None, ("nobody_available", {}))

    async def _apply(self, decisions: list[Decision], now: datetime, stats: SweepStats) -> None:
        today = self._today(now)
        events: list[dict] = []
        notes: list[dict] = []
        counters: dict[str, OwnerTally] = {}
        stuck: list[Decision] = []
        for d in decisions:
            lead_id = d.lead["_id"]
            if d.owner is None and d.rule is not None:
                stuck.append(d)
                continue
            if d.owner is None or d.rule is None:  # no rule (and so no owner): the team's pool
                if await self._leads.allocate_to_pool(lead_id, d.reason, now):
                    stats.pooled += 1
                    events.append(event(lead_id, "pooled", SYSTEM, {"reason": d.reason}, at=now))
                else:
                    stats.lost_races += 1
                continue
            assignment = {"owner_id": d.owner.id, "rule_id": str(d.rule["_id"]), "strategy": d.strategy, "reason": d.reason, "at": now}
            if not await self._leads.allocate_to_owner(lead_id, assignment):
                stats.lost_races += 1
                continue
            stats.assigned += 1
            stats.by_owner[d.owner.id] = stats.by_owner.get(d.owner.id, 0) + 1
            if d.lead.get("stage", "new") in OPEN_STAGES:
                tally = counters.setdefault(d.owner.id, OwnerTally(assigned_on=today))
                tally.open_leads += 1
                tally.assigned += 1
            events.append(event(lead_id, "assigned", SYSTEM, {"owner_id": d.owner.id, "rule_id": assignment["rule_id"], "strategy": d.strategy, "reason": d.reason}, at=now))
            notes.append(notification(
                d.owner.id, "lead_assigned", "新线索分配", f"{d.lead.get('name', '')}：{d.reason['zh-CN']}"[:200],
                f"assigned:{lead_id}:{d.owner.id}", data={"lead_id": lead_id},
            ))
        if stuck:
            stats.waiting += len(stuck)
            notes.extend(await self._stuck_notifications(stuck, today))
        await self._leads.add_events(events)
        await self._user_service.record_lead_changes(counters, now)
        await self._notifications.notify(notes, now)

    async def _stuck_notifications(self, stuck: list[Decision], today: str) -> list[dict]:
        team_ids: set[Any] = {d.lead.get("team_id") for d in stuck}
        teams = sorted(team_ids)
        managers = await self._users.find({"team_id": {"$in": teams}, "role": "manager", "active": True}, {"team_id": 1}).to_list(None)
        notes = []
        for d in stuck:
            for m in managers:
                if m["team_id"] == d.lead.get("team_id"):
                    notes.append(notification(
                        str(m["_id"]), "allocation_stuck", "线索待分配", f"{d.lead.get('name', '')}：{d.reason['zh-CN']}"[:200],
                        f"alloc-stuck:{d.lead['_id']}:{today}:{m['_id']}", data={"lead_id": d.lead["_id"]},
                    ))
        return notes

