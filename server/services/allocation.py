"""Lead allocation: rules pick an owner for each new lead, fairly and explainably.

Rules are tried in ``priority`` order (lower first) within the lead's team; a rule matches when
every field of its ``match`` that is given matches (each list is "any of"; an empty match matches
every lead): ``tags_any``, the ``source`` form, ``city``, ``level`` (the RFM layer instead where the
team's ``rfm.drives_allocation`` is set), ``layer``, source ``channel`` and ``campaign``, and custom
form ``answers``. Strategies:

- ``round_robin``: a persistent turn counter per rule, advanced atomically (``$inc``), so several
  instances hand out distinct turns;
- ``weighted``: smooth weighted round-robin, computed from the same counter, so a 3:1 weighting
  gives exactly 3:1 over any window of 4 turns;
- ``least_loaded``: fewest open leads, ties to the member who has waited longest;
- ``performance`` (按业绩分配): shares follow each member's conversion score over a trailing window
  (leads that became customers per lead received, from the report counters' running totals, and
  optionally collected revenue), with a floor share, handed out by the same smooth weighted
  round-robin over per-mille weights, so over any 1,000 turns the shares are the weights.

Ticket rules (``kind: "ticket"``) dispatch service tickets (``dispatch_ticket``) among the team's
service staff (users with ``service: true``) by the ticket's category and priority and the
customer's lead; see ``dispatch_ticket``.

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
from datetime import datetime, time, timedelta
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
from server.schemas.allocation import BULK_ASSIGN_LIMIT, BulkAssignIn, PerformanceParams, PreviewIn, RuleCreate, RuleUpdate, UnsavedPreviewIn
from server.services.audit import AuditService
from server.services.leads import LeadService, event
from server.services.lifecycle import OPEN_STAGES
from server.services.users import OwnerTally, UserService
from server.services.notifications import NotificationService, notification
from server.services.stats import money_key


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
    role: str | None = None
    service: bool = False
    open_tickets: int = 0


@dataclass
class Weight:
    """One member's share under the performance strategy, and the figures behind it."""

    member_id: str
    per_mille: int
    converted: int
    received: int
    collected_fen: int


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
    "bulk": {"zh-CN": "由 {name} 批量分配", "en": "assigned in bulk by {name}"},
    # what a rule matched on (any field but tags and source alone): "matched city 北京, level A"
    "matched": {"zh-CN": "匹配{items}", "en": "matched {items}"},
    "m_tag": {"zh-CN": "标签 {value}", "en": "tag {value}"},
    "m_source": {"zh-CN": "来源 {value}", "en": "source {value}"},
    "m_city": {"zh-CN": "城市 {value}", "en": "city {value}"},
    "m_level": {"zh-CN": "等级 {value}", "en": "level {value}"},
    "m_level_layer": {"zh-CN": "等级（RFM 分层）{value}", "en": "level (RFM layer) {value}"},
    "m_layer": {"zh-CN": "RFM 分层 {value}", "en": "RFM layer {value}"},
    "m_channel": {"zh-CN": "渠道 {value}", "en": "channel {value}"},
    "m_campaign": {"zh-CN": "活动 {value}", "en": "campaign {value}"},
    "m_answer": {"zh-CN": "{key} 为 {value}", "en": "{key} {value}"},
    "m_category": {"zh-CN": "类别 {value}", "en": "category {value}"},
    "m_priority": {"zh-CN": "优先级 {value}", "en": "priority {value}"},
    # the performance strategy
    "performance": {
        "zh-CN": "按业绩分配：{name} 份额 {share}%，{days} 天内转化 {received} 条中的 {converted} 条{revenue}，第 {turn}/{turns} 轮",
        "en": "performance: {name}: {share}% share, converted {converted} of {received} in {days} days{revenue}, turn {turn} of {turns}",
    },
    "performance_revenue": {"zh-CN": "，回款 {yuan} 元", "en": ", collected {yuan} yuan"},
    "performance_shares": {"zh-CN": "份额：{items}", "en": "shares: {items}"},
    "performance_share": {"zh-CN": "{name} {share}%", "en": "{name} {share}%"},
    "performance_zero": {
        "zh-CN": "按业绩分配的权重合计为零（没有在职成员或 {days} 天内无人转化），已进入团队公海",
        "en": "performance weights sum to zero (no active member, or no conversion in {days} days); sent to the team's pool",
    },
    # tickets (dispatch_ticket)
    "least_loaded_tickets": {"zh-CN": "负载最低：{open} 张未结工单", "en": "least loaded: {open} open tickets"},
    "ticket_fallback": {"zh-CN": "没有匹配的工单规则，分给团队售后人员", "en": "no ticket rule matched; given to the team's service staff"},
    "ticket_rule_fallback": {"zh-CN": "规则无人可接，改派团队售后人员", "en": "nobody on the rule available; given to the team's service staff"},
    "no_service_staff": {"zh-CN": "团队没有可接单的售后人员，等待经理分派", "en": "no service staff available; waiting for a manager"},
    # why a member was skipped
    "inactive": {"zh-CN": "已停用", "en": "inactive"},
    "moved_team": {"zh-CN": "已调至其他团队", "en": "moved to another team"},
    "at_capacity": {"zh-CN": "已达保有量上限 {open}/{capacity}", "en": "at capacity {open}/{capacity}"},
    "daily_quota": {"zh-CN": "今日配额已满 {assigned}/{quota}", "en": "daily quota {assigned}/{quota} reached"},
    "off_hours": {"zh-CN": "不在工作时间", "en": "outside working hours"},
    "not_service": {"zh-CN": "不是售后人员", "en": "not service staff"},
}
_SEPARATOR = {"zh-CN": "；", "en": "; "}
_LIST_SEPARATOR = {"zh-CN": "、", "en": ", "}

Phrase = tuple[str, dict[str, Any]]


def _say(language: str, phrase: Phrase) -> str:
    """A phrase in one language; a parameter that is a list of phrases is said as a list."""
    code, params = phrase
    said = {k: _LIST_SEPARATOR[language].join(_say(language, p) for p in v) if isinstance(v, list) else v for k, v in params.items()}
    return REASON_TEXTS[code][language].format(**said)


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


OPEN_TICKET_STATUSES = ("open", "assigned", "in_progress")
PER_MILLE = 1000
_LEAD_FIELDS = ("city", "level", "layer", "channel", "campaign", "answers")


def _one_of(wanted: list, value: Any) -> Any:
    """The first wanted value the lead has (``value`` may be a list, e.g. a multiselect answer)."""
    have = value if isinstance(value, list) else [value]
    return next((w for w in wanted if w in have), None)


def rule_matches(rule: dict, lead: dict, *, ticket: dict | None = None, level_from_layer: bool = False) -> Phrase | None:
    """Why the rule matches the lead (and, for a ticket rule, the ticket): a phrase for the reason,
    or None. Every given field must match; each list matches any of its values."""
    match = rule.get("match") or {}
    source = match.get("source")
    if source and (lead.get("source") or {}).get("form_slug") != source:
        return None
    items: list[Phrase] = []
    wanted = match.get("tags_any") or []
    tag = None
    if wanted:
        tag = _one_of(wanted, lead.get("tags") or [])
        if tag is None:
            return None
        items.append(("m_tag", {"value": tag}))
    if source:
        items.append(("m_source", {"value": source}))
    plain = not any(match.get(f) for f in (*_LEAD_FIELDS, "categories", "priorities"))
    if ticket is not None:
        for name, code, value in (("categories", "m_category", ticket.get("category")), ("priorities", "m_priority", ticket.get("priority"))):
            if match.get(name):
                if value not in match[name]:
                    return None
                items.append((code, {"value": value}))
    lead_source = lead.get("source") or {}
    for name, code, value in (
        ("city", "m_city", lead.get("city")),
        ("level", "m_level_layer" if level_from_layer else "m_level", lead.get("layer") if level_from_layer else lead.get("level")),
        ("layer", "m_layer", lead.get("layer")),
        ("channel", "m_channel", lead_source.get("channel")),
        ("campaign", "m_campaign", lead_source.get("campaign")),
    ):
        if match.get(name):
            hit = _one_of(match[name], value)
            if hit is None:
                return None
            items.append((code, {"value": hit}))
    answers = lead.get("answers") or {}
    for key, values in sorted((match.get("answers") or {}).items()):
        hit = _one_of(values, answers.get(key))
        if hit is None:
            return None
        items.append(("m_answer", {"key": key, "value": hit}))
    if plain:  # tags and source alone: the phrases reasons have always used
        if tag is not None:
            return ("matched_tag_source", {"tag": tag, "source": source}) if source else ("matched_tag", {"tag": tag})
        return ("matched_source", {"source": source}) if source else ("matches_all", {})
    return ("matched", {"items": items}) if items else ("matches_all", {})


def _pct(per_mille_share: int) -> str:
    """A per-mille share as a percentage for a person: 320 → "32", 325 → "32.5"."""
    return f"{per_mille_share / 10:g}"


def _uses_level(rules: list[dict]) -> bool:
    return any((r.get("match") or {}).get("level") for r in rules)


def per_mille(scores: list[float], floor: float) -> list[int]:
    """Shares in thousandths that add up to exactly 1,000 (largest remainder): each member gets the
    floor, the rest follows the scores; all-zero scores with a floor share equally; all-zero scores
    without one give all zeros (nobody to pick)."""
    n = len(scores)
    total = sum(scores)
    if n == 0 or (total <= 0 and floor <= 0):
        return [0] * n
    if total <= 0:
        raw = [PER_MILLE / n] * n
    else:
        rest = max(0.0, 1 - floor * n)
        raw = [PER_MILLE * (floor + rest * sc / total) for sc in scores]
        scale = PER_MILLE / sum(raw)
        raw = [r * scale for r in raw]
    out = [int(r) for r in raw]
    for i in sorted(range(n), key=lambda i: (-(raw[i] - out[i]), i))[: PER_MILLE - sum(out)]:
        out[i] += 1
    return out


class AllocationService:
    def __init__(
        self, *, allocation_rules, leads_view, users_view, clock: Clock, leads: LeadService, users: UserService,
        notifications: NotificationService, audit: AuditService, tz, tickets_view=None, stats=None, allocation_runs=None,
    ) -> None:
        self._rules = allocation_rules
        self._runs = allocation_runs  # bulk assignments' answers, kept for Idempotency-Key replays
        self._leads_col = leads_view  # read-only: leads waiting for an owner; LeadService writes them
        self._users = users_view  # read-only: members' loads; UserService keeps their counters
        self._tickets = tickets_view  # read-only: open tickets per handler; TicketService writes them
        self._stats = stats  # the report counters' running totals (performance scores)
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
        await self._check_members(data.team_id, data.members, data.kind)
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
        await self._check_members(merged["team_id"], merged.get("members") or [], merged.get("kind", "lead"))
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

    async def _check_members(self, team_id: str, members: list[str], kind: str = "lead") -> None:
        """Members are reps or managers of the rule's team; a ticket rule's are active service staff."""
        oids = [maybe_oid(m) for m in members]
        if None in oids:
            raise Invalid("allocation_rule.bad_members", details=[detail("members", "bad_id", text="not_a_user_id")])
        if not members:
            return
        found = await self._users.find({"_id": {"$in": oids}}, {"team_id": 1, "role": 1, "active": 1, "service": 1}).to_list(None)
        ok = {str(u["_id"]): u for u in found if u.get("team_id") == team_id and u.get("role") in ("rep", "manager")}
        outsiders = [m for m in members if m not in ok]
        if outsiders:
            raise Invalid("allocation_rule.bad_members", details=[detail("members", "not_in_team", text="members_outside_team", value=",".join(outsiders), members=", ".join(outsiders))])
        if kind == "ticket":
            others = [m for m in members if not (ok[m].get("active") and ok[m].get("service"))]
            if others:
                raise Invalid("allocation_rule.bad_members", details=[detail("members", "not_service", text="members_not_service", value=",".join(others), members=", ".join(others))])

    # ------------------------------------------------------------ preview
    async def preview(self, actor: Actor, rule_id: str, data: PreviewIn) -> dict:
        require_role(actor, "admin", "manager")
        rule = await self._rules.find_one({"_id": parse_oid(rule_id, "allocation_rule.not_found")})
        if rule is None or (not actor.is_admin and rule["team_id"] != actor.team_id):
            raise NotFound("allocation_rule.not_found")
        return await self._preview(rule, data)

    async def preview_unsaved(self, actor: Actor, data: UnsavedPreviewIn) -> dict:
        """The same answer for a rule not saved yet (the console's editor): checked as on create."""
        require_role(actor, "admin", "manager")
        if not actor.is_admin and data.rule.team_id != actor.team_id:
            raise NotFound("team.not_found")
        await self._check_members(data.rule.team_id, data.rule.members, data.rule.kind)
        return await self._preview({**data.rule.model_dump(), "_id": None, "turn": 0}, data.lead)

    async def _preview(self, rule: dict, data: PreviewIn) -> dict:
        """Who would get such a lead (or ticket) next under ``rule``, and why; writes nothing."""
        rule_id = str(rule["_id"]) if rule.get("_id") is not None else None
        lead = {
            "tags": data.tags, "source": {"form_slug": data.source, "channel": data.channel, "campaign": data.campaign}, "team_id": rule["team_id"],
            "city": data.city, "level": data.level, "layer": data.layer, "answers": data.answers,
        }
        level_from_layer = await self._level_from_layer(rule["team_id"], [rule])
        ticket = {"category": data.category, "priority": data.priority} if rule.get("kind") == "ticket" else None
        why = rule_matches(rule, lead, ticket=ticket, level_from_layer=level_from_layer)
        if why is None:
            return {"matched": False, "rule_id": rule_id, "reason": Reason(rule["name"], ("no_match", {})).texts()}
        now = self._clock.now()
        turn = rule.get("turn", 0) + 1
        if ticket is not None:
            members = await self._ticket_members(rule.get("members") or [])
            owner, picked = self._pick_ticket(rule, turn, members, now, why)
            reason = picked.texts()
        else:
            members = await self._members([rule], now)
            weights = await self._performance_weights([rule], members, now)
            owner, reason = self._pick(rule, turn, members, now, why, weights.get(rule["_id"]))
        return {
            "matched": True, "rule_id": rule_id, "strategy": rule["strategy"], "reason": reason,
            "owner_id": owner.id if owner else None, "owner_name": owner.name if owner else None,
        }

    async def _level_from_layer(self, team_id: str | None, rules: list[dict]) -> bool:
        """Whether the team's ``level`` matches read the RFM layer (only asked when a rule matches on level)."""
        if not team_id or not _uses_level(rules):
            return False
        return (await self._user_service.team_settings(team_id)).rfm.drives_allocation

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
        found = await self._rules.find({"team_id": {"$in": teams}, "active": True}).sort("priority", 1).to_list(None) if teams else []
        rules = [r for r in found if r.get("kind", "lead") == "lead"]  # ticket rules dispatch tickets only
        members = await self._members(rules, now)
        layer_teams = {t for t in teams if await self._level_from_layer(t, [r for r in rules if r["team_id"] == t])}
        by_rule: dict[Any, list[tuple[dict, Phrase]]] = {}
        decisions: list[Decision] = []
        for lead in leads:
            for rule in rules:
                if rule["team_id"] == lead.get("team_id"):
                    why = rule_matches(rule, lead, level_from_layer=rule["team_id"] in layer_teams)
                    if why:
                        by_rule.setdefault(rule["_id"], []).append((lead, why))
                        break
            else:
                decisions.append(Decision(lead, None, None, "pool", Reason(steps=[("pool", {})]).texts()))
        rules_by_id = {r["_id"]: r for r in rules}
        weights = await self._performance_weights([rules_by_id[i] for i in by_rule], members, now)
        for rule_id, group in by_rule.items():
            rule = rules_by_id[rule_id]
            first_turn = 1
            if rule["strategy"] in ("round_robin", "weighted", "performance"):
                updated = await self._rules.find_one_and_update({"_id": rule_id}, {"$inc": {"turn": len(group)}}, projection={"turn": 1}, return_document=ReturnDocument.AFTER)
                first_turn = updated["turn"] - len(group) + 1
            for offset, (lead, why) in enumerate(group):
                owner, reason = self._pick(rule, first_turn + offset, members, now, why, weights.get(rule_id))
                if owner is None and rule["strategy"] == "performance" and not any(w.per_mille for w in weights.get(rule_id) or []):
                    # nobody has a share (no active member, or no conversions and no floor): the pool
                    days = (rule.get("performance") or {}).get("window_days", 30)
                    decisions.append(Decision(lead, None, None, "pool", Reason(rule["name"], why, steps=[("performance_zero", {"days": days})]).texts()))
                    continue
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

    async def _performance_weights(self, rules: list[dict], members: dict[str, Member], now: datetime) -> dict[Any, list[Weight]]:
        """Each performance rule's per-mille shares over its members who are active and still in the
        team (capacity, quota and hours are skipped turn by turn, as for ``weighted``). The score is
        conversions per lead received in the trailing window (``{rep}__entered__customer`` /
        ``{rep}__received`` of the team's running totals: one read of at most three documents per
        team and window), blended with the share of money collected (the per-rep money counter
        ``money_key("rep", rep, "collected_fen")``, 0 where not counted) by ``revenue_weight``, and
        floored by ``floor_share``."""
        out: dict[Any, list[Weight]] = {}
        totals: dict[tuple[str, int], dict[str, int]] = {}
        today = now.astimezone(self._tz).date()
        for rule in rules:
            if rule["strategy"] != "performance":
                continue
            params = PerformanceParams.model_validate(rule.get("performance") or {})
            key = (rule["team_id"], params.window_days)
            if key not in totals:
                period: tuple[dict[str, int], dict[str, int]] = ({}, {})
                if self._stats is not None:
                    period = await self._stats.totals(rule["team_id"], today - timedelta(days=params.window_days - 1), today)
                totals[key] = period[0]
            counts = totals[key]
            ids = [m for m in rule.get("members") or [] if (mm := members.get(m)) is not None and mm.active and mm.team_id == rule["team_id"]]
            converted = [max(0, counts.get(f"{m}__entered__customer", 0)) for m in ids]
            received = [max(0, counts.get(f"{m}__received", 0)) for m in ids]
            collected = [max(0, counts.get(money_key("rep", m, "collected_fen"), 0)) for m in ids]
            rates = [c / r if r else 0.0 for c, r in zip(converted, received)]
            rate_sum, money_sum = sum(rates), sum(collected)
            rw = params.revenue_weight if money_sum else 0.0
            scores = [(1 - rw) * (rate / rate_sum if rate_sum else 0.0) + rw * (money / money_sum if money_sum else 0.0) for rate, money in zip(rates, collected)]
            shares = per_mille(scores, params.floor_share)
            out[rule["_id"]] = [Weight(m, w, c, r, f) for m, w, c, r, f in zip(ids, shares, converted, received, collected)]
        return out

    def _pick(
        self, rule: dict, turn: int, members: dict[str, Member], now: datetime, why: Phrase, weights: list[Weight] | None = None,
    ) -> tuple[Member | None, dict[str, str]]:
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
            fixed: list[int] = rule.get("weights") or [1] * len(ids)
            order = swrr_order(fixed)
            total = len(order)
            for k in range(total):
                position = (turn - 1 + k) % total
                member = check(ids[order[position]])
                if member is not None:
                    w = fixed[order[position]]
                    return answer(member, ("weighted", {"weight": w, "total": sum(fixed), "turn": position + 1, "turns": total}))
            return answer(None, ("nobody_available", {}))
        if strategy == "performance":
            for i in ids:  # inactive or moved members have no share: say so
                if not any(w.member_id == i for w in weights or []):
                    check(i)
            shared = [w for w in weights or [] if w.per_mille > 0]
            if not shared:
                return answer(None, ("nobody_available", {}))
            order = swrr_order([w.per_mille for w in shared])
            total = len(order)
            days = (rule.get("performance") or {}).get("window_days", 30)
            rw = (rule.get("performance") or {}).get("revenue_weight", 0)
            for k in range(total):
                position = (turn - 1 + k) % total
                share = shared[order[position]]
                member = check(share.member_id)
                if member is not None:
                    revenue = ("performance_revenue", {"yuan": f"{share.collected_fen / 100:,.2f}"})
                    reason.steps.append(("performance", {
                        "name": member.name, "share": _pct(share.per_mille), "converted": share.converted, "received": share.received, "days": days,
                        "revenue": [revenue] if rw else [], "turn": position + 1, "turns": total,
                    }))
                    shares = [("performance_share", {"name": members[x.member_id].name, "share": _pct(x.per_mille)}) for x in shared[:10]]
                    return answer(member, ("performance_shares", {"items": shares}))
            return answer(None, ("nobody_available", {}))
        n = len(ids)
        for k in range(n):
            position = (turn - 1 + k) % n
            member = check(ids[position])
            if member is not None:
                return answer(member, ("round_robin", {"turn": position + 1, "turns": n}))
        return answer(None, ("nobody_available", {}))

    # ------------------------------------------------------------ bulk assign
    async def bulk_assign(self, actor: Actor, data: BulkAssignIn, run_id: str | None = None) -> dict:
        """``POST /leads/assign``: many leads (ids, or a filter matching at most 500) to one person or
        shared out by a lead rule (its strategy and members, whatever its match). A dry run answers
        what would happen and writes nothing. Leads outside the caller's scope, like ids that do not
        exist, are skipped as ``not_found`` and only counted. A real run moves the leads in one
        command (each only if unchanged since read), then events, counts, tasks and one notification
        per new owner in bulk; its answer is kept under ``run_id`` for an Idempotency-Key replay."""
        require_role(actor, "admin", "manager")
        now = self._clock.now()
        leads, requested = await self._bulk_leads(actor, data)
        skipped: dict[str, list[str]] = {}
        missing = requested - len(leads) if data.ids is not None else 0
        picks: list[tuple[dict, Member, dict]] = []
        if data.to_user_id is not None:
            target = await self._bulk_target(actor, data.to_user_id, now)
            text = {"zh-CN": f"由 {actor.name or actor.id} 批量分配", "en": f"assigned in bulk by {actor.name or actor.id}"}
            if data.reason:
                text = {lang: f"{value}：{data.reason}" if lang == "zh-CN" else f"{value}: {data.reason}" for lang, value in text.items()}
            for lead in leads:
                if lead.get("team_id") != target.team_id:
                    skipped.setdefault("other_team", []).append(lead["_id"])
                elif lead.get("owner_id") == target.id:
                    skipped.setdefault("already_owner", []).append(lead["_id"])
                else:
                    picks.append((lead, target, {"owner_id": target.id, "rule_id": None, "strategy": "bulk", "reason": text, "at": now}))
        else:
            rule = await self._rules.find_one({"_id": parse_oid(data.rule_id, "allocation_rule.not_found")})
            if rule is None or rule.get("kind", "lead") != "lead" or (not actor.is_admin and rule["team_id"] != actor.team_id):
                raise NotFound("allocation_rule.not_found")
            mine = []
            for lead in leads:
                if lead.get("team_id") != rule["team_id"]:
                    skipped.setdefault("other_team", []).append(lead["_id"])
                else:
                    mine.append(lead)
            members = await self._members([rule], now)
            weights = await self._performance_weights([rule], members, now)
            first_turn = rule.get("turn", 0) + 1
            if mine and not data.dry_run and rule["strategy"] in ("round_robin", "weighted", "performance"):
                updated = await self._rules.find_one_and_update({"_id": rule["_id"]}, {"$inc": {"turn": len(mine)}}, projection={"turn": 1}, return_document=ReturnDocument.AFTER)
                first_turn = updated["turn"] - len(mine) + 1 if updated else first_turn
            for offset, lead in enumerate(mine):
                owner, reason = self._pick(rule, first_turn + offset, members, now, ("bulk", {"name": actor.name or actor.id}), weights.get(rule["_id"]))
                if owner is None:
                    skipped.setdefault("nobody_available", []).append(lead["_id"])
                elif lead.get("owner_id") == owner.id:
                    skipped.setdefault("already_owner", []).append(lead["_id"])
                else:
                    owner.open_leads += 1 if lead.get("stage", "new") in OPEN_STAGES else 0
                    owner.assigned_today += 1
                    owner.last_assigned_at = now
                    picks.append((lead, owner, {"owner_id": owner.id, "rule_id": str(rule["_id"]), "strategy": rule["strategy"], "reason": reason, "at": now}))
        run = run_id or str(ObjectId())
        if data.dry_run:
            done = [(lead, owner) for lead, owner, _ in picks]
        else:
            by_id = {m.id: m for _, m, _ in picks}
            moved = await self._leads.assign_many([(lead, owner.id, assignment) for lead, owner, assignment in picks], actor, run, now)
            done = [(lead, by_id[owner_id]) for lead, owner_id in moved]
            moved_ids = {lead["_id"] for lead, _ in done}
            changed = [lead["_id"] for lead, _, _ in picks if lead["_id"] not in moved_ids]
            if changed:
                skipped["changed"] = changed
        counts: dict[str, int] = {}
        names: dict[str, str] = {}
        for _, owner in done:
            counts[owner.id] = counts.get(owner.id, 0) + 1
            names[owner.id] = owner.name
        result = {
            "run_id": None if data.dry_run else run, "dry_run": data.dry_run, "requested": requested, "assigned": len(done),
            "to": [{"owner_id": i, "owner_name": names[i], "count": n} for i, n in counts.items()],
            "skipped": ([{"reason": "not_found", "count": missing, "lead_ids": []}] if missing else [])
            + [{"reason": why, "count": len(ids), "lead_ids": ids} for why, ids in skipped.items()],
        }
        if not data.dry_run:
            await self._notifications.notify([
                notification(i, "lead_assigned", "新线索分配", f"{actor.name or actor.id} 分配给你 {n} 条线索", f"bulk-assigned:{run}:{i}", data={"count": n})
                for i, n in counts.items()
            ], now)
            await self._runs.insert_one({"_id": run, "actor_id": actor.id, "result": result, "created_at": now, "expires_at": now + timedelta(days=7)})
            await self._audit.record(actor, "lead.bulk_assign", target_type="allocation_run", target_id=run,
                                     details={"assigned": len(done), "requested": requested, "rule_id": data.rule_id, "to_user_id": data.to_user_id})
        return result

    async def bulk_run(self, actor: Actor, run_id: str) -> dict | None:
        """A bulk assignment's answer, for the caller who ran it (an Idempotency-Key replay)."""
        doc = await self._runs.find_one({"_id": run_id})
        return doc["result"] if doc is not None and doc.get("actor_id") == actor.id else None

    async def _bulk_leads(self, actor: Actor, data: BulkAssignIn) -> tuple[list[dict], int]:
        """The leads of a bulk assignment within the caller's scope, and how many were asked for."""
        fields = {"owner_id": 1, "team_id": 1, "stage": 1, "version": 1, "name": 1}
        scope: dict[str, Any] = {} if actor.is_admin else {"team_id": actor.team_id or "-"}
        if data.ids is not None:
            found = await self._leads_col.find({"_id": {"$in": list(data.ids)}, **scope}, fields).to_list(None)
            order = {lead_id: i for i, lead_id in enumerate(data.ids)}
            return sorted(found, key=lambda d: order[d["_id"]]), len(data.ids)
        f = data.filter
        assert f is not None
        if actor.is_admin and not f.team_id:
            raise Invalid("lead.bulk_team_required", details=[detail("filter.team_id", "required", text="bulk_team_required")])
        if not actor.is_admin and f.team_id and f.team_id != actor.team_id:
            return [], 0  # another team's leads: nothing in scope
        query: dict[str, Any] = {"team_id": f.team_id or actor.team_id or "-"}
        if f.stage:
            query["stage"] = f.stage
        if f.tags:
            query["tags"] = {"$in": list(f.tags)}
        if f.owner_id:
            query["owner_id"] = f.owner_id
        if f.pool is not None:
            query["pool"] = f.pool
        found = await self._leads_col.find(query, fields).sort("_id", 1).limit(BULK_ASSIGN_LIMIT + 1).to_list(None)
        if len(found) > BULK_ASSIGN_LIMIT:
            raise Invalid("lead.bulk_too_many", params={"limit": BULK_ASSIGN_LIMIT},
                          details=[detail("filter", "too_many", text="at_most", max=BULK_ASSIGN_LIMIT)])
        return found, len(found)

    async def _bulk_target(self, actor: Actor, user_id: str, now: datetime) -> Member:
        """The person receiving a bulk assignment: an active rep or manager (of the caller's team,
        for a manager)."""
        oid = maybe_oid(user_id)
        doc = await self._users.find_one({"_id": oid}, {"name": 1, "active": 1, "role": 1, "team_id": 1}) if oid is not None else None
        if doc is None or not doc.get("active") or doc.get("role") not in ("rep", "manager") or (not actor.is_admin and doc.get("team_id") != actor.team_id):
            raise Invalid("pool.bad_assignee", details=[detail("to_user_id", "not_in_team", text="assignee_not_in_team")])
        return Member(id=str(doc["_id"]), name=doc.get("name", ""), active=True, capacity=0, open_leads=0, assigned_today=0,
                      last_assigned_at=None, team_id=doc.get("team_id"), role=doc.get("role"))

    # ------------------------------------------------------------ tickets
    async def dispatch_ticket(self, ticket: dict, lead: dict, now: datetime) -> dict:
        """Who handles a new ticket, and why. The team's active ticket rules are tried in priority
        order (category, priority, and the customer's lead: tags, level, layer, city ...); the
        matching rule's strategy picks among its members who are still active service staff of
        the team (round-robin and weighted by the rule's turn, reserved here: the only write;
        least-loaded by open tickets). No rule matches, or nobody on it is available: the team's
        active service staff with the fewest open tickets. Nobody: no assignee (the ticket stays
        open and the caller tells the managers). The ticket's assignment is the caller's to write."""
        team_id = ticket.get("team_id")
        found = await self._rules.find({"team_id": team_id, "active": True}).sort("priority", 1).to_list(None) if team_id else []
        rules = [r for r in found if r.get("kind") == "ticket"]
        level_from_layer = await self._level_from_layer(team_id, rules)
        for rule in rules:
            why = rule_matches(rule, lead, ticket=ticket, level_from_layer=level_from_layer)
            if why is not None:
                break
        else:
            rule, why = None, None
        reason = Reason()
        if rule is not None and why is not None:
            turn = rule.get("turn", 0) + 1
            if rule["strategy"] in ("round_robin", "weighted"):
                updated = await self._rules.find_one_and_update({"_id": rule["_id"]}, {"$inc": {"turn": 1}}, projection={"turn": 1}, return_document=ReturnDocument.AFTER)
                turn = updated["turn"] if updated else turn
            members = await self._ticket_members(rule.get("members") or [])
            owner, reason = self._pick_ticket(rule, turn, members, now, why)
            if owner is not None:
                return {"assignee_id": owner.id, "rule_id": str(rule["_id"]), "strategy": rule["strategy"], "reason": reason.texts()}
            reason.steps.append(("ticket_rule_fallback", {}))
        else:
            reason.steps.append(("ticket_fallback", {}))
        staff = await self._service_staff(team_id)
        if not staff:
            reason.steps.append(("no_service_staff", {}))
            return {"assignee_id": None, "rule_id": None, "strategy": "none", "reason": reason.texts()}
        order = list(staff)
        best = min(staff.values(), key=lambda m: (m.open_tickets, order.index(m.id)))
        reason.steps.append(("least_loaded_tickets", {"open": best.open_tickets}))
        return {"assignee_id": best.id, "rule_id": None, "strategy": "least_loaded", "reason": reason.texts()}

    async def _ticket_members(self, ids: list[str]) -> dict[str, Member]:
        oids = [o for o in (maybe_oid(i) for i in ids) if o is not None]
        if not oids:
            return {}
        docs = await self._users.find({"_id": {"$in": oids}}, {"name": 1, "active": 1, "team_id": 1, "role": 1, "service": 1}).to_list(None)
        return await self._with_ticket_loads(docs)

    async def _service_staff(self, team_id: str | None) -> dict[str, Member]:
        """The team's active service staff (reps and managers with ``service: true``), in _id order."""
        if not team_id:
            return {}
        docs = await self._users.find(
            {"team_id": team_id, "role": {"$in": ["rep", "manager"]}, "active": True, "service": True}, {"name": 1, "active": 1, "team_id": 1, "role": 1, "service": 1},
        ).sort("_id", 1).limit(500).to_list(None)
        return await self._with_ticket_loads(docs)

    async def _with_ticket_loads(self, docs: list[dict]) -> dict[str, Member]:
        """Members with their open tickets (open, assigned, in progress): one aggregation for all."""
        ids = [str(d["_id"]) for d in docs]
        loads: dict[str, int] = {}
        if ids and self._tickets is not None:
            rows = await self._tickets.aggregate([
                {"$match": {"assignee_id": {"$in": ids}, "status": {"$in": list(OPEN_TICKET_STATUSES)}}},
                {"$group": {"_id": "$assignee_id", "n": {"$sum": 1}}},
            ])
            loads = {row["_id"]: row["n"] async for row in rows}
        return {
            str(d["_id"]): Member(
                id=str(d["_id"]), name=d.get("name", ""), active=bool(d.get("active")), capacity=0, open_leads=0, assigned_today=0,
                last_assigned_at=None, team_id=d.get("team_id"), role=d.get("role"), service=bool(d.get("service")),
                open_tickets=loads.get(str(d["_id"]), 0),
            )
            for d in docs
        }

    def _ticket_unavailable(self, rule: dict, member: Member | None, now: datetime) -> Phrase | None:
        if member is None or not member.active:
            return ("inactive", {})
        if member.team_id != rule["team_id"] or member.role not in ("rep", "manager"):
            return ("moved_team", {})
        if not member.service:
            return ("not_service", {})
        hours = rule.get("working_hours")
        if hours:
            local = now.astimezone(self._tz)
            start, end = (time.fromisoformat(hours["start"]), time.fromisoformat(hours["end"]))
            if local.isoweekday() not in hours["days"] or not (start <= local.time() < end):
                return ("off_hours", {})
        return None

    def _pick_ticket(self, rule: dict, turn: int, members: dict[str, Member], now: datetime, why: Phrase) -> tuple[Member | None, Reason]:
        """A ticket rule's pick: like ``_pick``, with ticket loads and service staff; the reason is
        returned as phrases so that the fallback to the team's staff can continue it."""
        ids = rule.get("members") or []
        reason = Reason(rule["name"], why)
        available: list[Member] = []
        for i in ids:
            member = members.get(i)
            problem = self._ticket_unavailable(rule, member, now)
            if problem:
                reason.skipped.append((member.name if member else i, problem))
            else:
                available.append(member)  # type: ignore[arg-type]
        if not available:
            reason.steps.append(("nobody_available", {}))
            return None, reason
        if rule["strategy"] == "least_loaded":
            best = min(available, key=lambda m: (m.open_tickets, ids.index(m.id)))
            reason.steps.append(("least_loaded_tickets", {"open": best.open_tickets}))
            return best, reason
        ok = {m.id for m in available}
        weights = rule.get("weights") if rule["strategy"] == "weighted" else None
        order = swrr_order(weights) if weights else list(range(len(ids)))
        total = len(order)
        for k in range(total):
            position = (turn - 1 + k) % total
            member_id = ids[order[position]]
            if member_id in ok:
                if weights:
                    w = weights[order[position]]
                    reason.steps.append(("weighted", {"weight": w, "total": sum(weights), "turn": position + 1, "turns": total}))
                else:
                    reason.steps.append(("round_robin", {"turn": position + 1, "turns": total}))
                return members[member_id], reason
        reason.steps.append(("nobody_available", {}))
        return None, reason

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
            if not await self._leads.allocate_to_owner(lead_id, assignment, team_id=d.lead.get("team_id"), stage=d.lead.get("stage", "new")):
                stats.lost_races += 1
                continue
            stats.assigned += 1
            stats.by_owner[d.owner.id] = stats.by_owner.get(d.owner.id, 0) + 1
            tally = counters.setdefault(d.owner.id, OwnerTally(assigned_on=today))
            tally.scope_entries.append(lead_id)  # the owner-change listeners (tickets of the lead) hear of it
            if d.lead.get("stage", "new") in OPEN_STAGES:
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

