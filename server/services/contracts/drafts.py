"""Drafts and approvals: a contract from draft to active — terms and plan, the approval chain built
from the amount at submission, decisions (approve, reject, return), the approver's inbox, the lead
becoming a customer on activation, and renewals (a new draft linked to the old contract).

Every change is a whole-document replacement guarded by ``version`` (the document carries
datetimes in its steps, and datetimes are never written with ``$set``; docs/mongodb-compat.md), so
two managers approving the same step at once produce exactly one approval and one 412.
"""

from __future__ import annotations

import builtins
from collections import deque
from datetime import date, datetime, timedelta
from typing import Any
from collections.abc import Awaitable, Callable

from bson import ObjectId

from config.settings import Settings
from server.actor import SYSTEM, Actor
from server.clock import Clock
from server.errors import Conflict, Forbidden, Invalid, NotFound, VersionMismatch, detail
from server.ids import maybe_oid
from server.paging import Page, paginate
from server.schemas.common import DATE_MAX
from server.schemas.contracts import ContractCreate, ContractListQuery, ContractUpdate, InstalmentIn
from server.schemas.team_settings import ApprovalTier, TeamSettings
from server.services.audit import AuditService
from server.services.contracts.common import NAMED, ContractBase, next_due, parse_date
from server.services.contracts.money_events import ended_at, ended_event, payment_event, signed_event
from server.services.leads import LeadService
from server.services.lifecycle import CUSTOMER_STAGES, TRANSITIONS
from server.services.notifications import NotificationService, notification

DECISIONS = ("approve", "reject", "return")
EVENT_KINDS = {"approve": "contract_approved", "reject": "contract_rejected", "return": "contract_returned"}
# Stages a lead is never walked *through* on its way to customer / retained.
_NO_PASSING = {"lost", "at_risk", "churned"}


def stage_path(current: str, target: str) -> list[str] | None:
    """The shortest walk through the lifecycle machine from ``current`` to ``target``."""
    if current == target:
        return []
    seen = {current}
    queue: deque[tuple[str, list[str]]] = deque([(current, [])])
    while queue:
        stage, path = queue.popleft()
        for nxt in TRANSITIONS.get(stage, ()):
            if nxt in seen or (nxt in _NO_PASSING and nxt != target):
                continue
            if nxt == target:
                return path + [nxt]
            seen.add(nxt)
            queue.append((nxt, path + [nxt]))
    return None


def _renewal_terms(old: dict) -> tuple[date, date, list[dict]]:
    """The renewal's start, end and payment plan: the same length (whole years stay whole years
    across leap days), starting the day after ``old`` ends. Refused (422) when any date would fall
    after DATE_MAX — a contract ending 9999-12-31 has no next day at all."""
    start, end = parse_date(old["start_date"]), parse_date(old["end_date"])
    try:
        new_start = end + timedelta(days=1)
        shift = new_start - start
        new_end = new_start + (end - start)
        for years in range(1, 11):
            try:
                if start.replace(year=start.year + years) - timedelta(days=1) == end:
                    new_end = new_start.replace(year=new_start.year + years) - timedelta(days=1)
                    break
            except ValueError:
                break
        plan = [{"due_date": parse_date(i["due_date"]) + shift, "amount_fen": i["amount_fen"]} for i in old["payment_plan"]]
    except OverflowError:
        plan, new_end = [], date.max
    if new_end > DATE_MAX or any(i["due_date"] > DATE_MAX for i in plan):
        raise Invalid("contract.renewal_out_of_range", params={"max": DATE_MAX.isoformat()},
                      details=[detail("end_date", "date_range", text="renewal_ends_after", max=DATE_MAX.isoformat())])
    return new_start, new_end, plan


class ContractService(ContractBase):
    """Drafts, approval chains and decisions, the inbox and renewals."""

    def __init__(
        self, *, contracts, users_view, leads_view, clock: Clock, settings: Settings, leads: LeadService, audit: AuditService,
        notifications: NotificationService, team_settings: Callable[[str | None], Awaitable[TeamSettings]], uploads=None,
        lead_events_view=None,
    ) -> None:
        super().__init__(contracts, clock, settings)
        self._events_col = lead_events_view  # read-only: which money events a contract already has (upgrade_money_events)
        self._uploads = uploads  # UploadService: a contract's attachments, readable by whoever sees the contract
        if uploads is not None:
            uploads.register_access("contract", self.readable)
        self._team_settings = team_settings  # UserService.team_settings: the approval tiers of the contract's team
        self._users = users_view
        self._leads_col = leads_view
        self._leads = leads
        self._audit = audit
        self._notifications = notifications

    # ------------------------------------------------------------ drafts
    def _check_terms(self, amount: int, start: date, end: date, plan: list[dict]) -> None:
        if amount > self._settings.contract_max_amount_fen:
            raise Invalid("contract.amount_too_large", params={"max": self._settings.contract_max_amount_fen},
                          details=[detail("amount_fen", "too_large", text="at_most", max=self._settings.contract_max_amount_fen)])
        if end < start:
            raise Invalid("contract.bad_dates", details=[detail("end_date", "before_start", text="end_before_start")])
        total = sum(i["amount_fen"] for i in plan)
        if total != amount:
            raise Invalid("contract.plan_mismatch", params={"plan": total, "amount": amount},
                          details=[detail("payment_plan", "sum", text="plan_sum", total=total, amount=amount)])

    @staticmethod
    def _plan(plan_in: list | None, amount: int, start: date) -> list[dict]:
        """Instalments ordered by due date; no plan means one instalment of the whole amount due at the start."""
        items: list[dict[str, Any]] = [{"due_date": i.due_date, "amount_fen": i.amount_fen} for i in plan_in] if plan_in else [{"due_date": start, "amount_fen": amount}]
        items.sort(key=lambda i: i["due_date"])
        return [{"no": n, "due_date": i["due_date"].isoformat(), "amount_fen": i["amount_fen"], "paid_fen": 0} for n, i in enumerate(items, 1)]

    async def create(self, actor: Actor, data: ContractCreate, *, renews: dict | None = None, contract_id: str | None = None) -> dict:
        lead = await self._leads.get(actor, data.lead_id, {"name": 1, "owner_id": 1, "team_id": 1, "stage": 1})
        plan = self._plan(data.payment_plan, data.amount_fen, data.start_date)
        self._check_terms(data.amount_fen, data.start_date, data.end_date, plan)
        now = self._clock.now()
        doc: dict[str, Any] = {
            "_id": contract_id or str(ObjectId()),  # pre-allocated under an Idempotency-Key
            "lead_id": lead["_id"],
            "lead_name": lead.get("name", ""),
            "owner_id": lead.get("owner_id") or actor.id,
            "team_id": lead.get("team_id") or actor.team_id,
            "title": data.title,
            "amount_fen": data.amount_fen,
            "start_date": data.start_date.isoformat(),
            "end_date": data.end_date.isoformat(),
            "notes": data.notes,
            "status": "draft",
            "renews": renews["_id"] if renews else None,
            "renewed_by": None,
            "renewal_active": False,
            "payment_plan": plan,
            "next_due": next_due(plan),
            "paid": False,
            "payments": [],
            "payment_ids": [],
            "steps": [],
            "current_step": None,
            "current_role": None,
            "current_approvers": [],
            "approver_ids": [],
            "round": 0,
            "past_rounds": [],
            "version": 1,
            "created_at": now,
            "updated_at": now,
            "created_by": actor.id,
        }
        if data.attachments and self._uploads is not None:  # checked before anything is written
            doc["attachments"] = await self._uploads.check(actor, data.attachments, kind="contract", target_id=doc["_id"])
        await self._col.insert_one(doc)
        if data.attachments and self._uploads is not None:
            await self._uploads.attach(actor, data.attachments, kind="contract", target_id=doc["_id"])
        await self._leads.add_event(lead["_id"], "contract_created", actor, {"contract_id": doc["_id"], "title": data.title, "amount_fen": data.amount_fen, "renews": doc["renews"]}, at=now)
        if lead.get("stage") == "churned":  # a churned customer buying again: on the win-back list
            await self._leads.note_return(lead["_id"], "contract", now)
        return doc

    async def list(self, actor: Actor, query: ContractListQuery) -> Page:
        filter_: dict[str, Any] = {}
        if query.status:
            filter_["status"] = query.status
        if query.lead_id:
            filter_["lead_id"] = query.lead_id
        filter_.update(self.scope(actor))  # last: a filter never widens the scope
        return await paginate(self._col, filter_, limit=query.limit, cursor=query.cursor)

    async def update(self, actor: Actor, contract_id: str, data: ContractUpdate, version: int) -> dict:
        doc = await self._in_scope(actor, contract_id)
        if doc["status"] != "draft":
            raise Conflict("contract.not_draft")
        if doc["version"] != version:
            raise VersionMismatch("contract.version_mismatch")
        changes = data.model_dump(exclude_unset=True, exclude={"version", "payment_plan"})  # nulls: notes only (ContractUpdate)
        amount = changes.get("amount_fen", doc["amount_fen"])
        start = changes.get("start_date") or parse_date(doc["start_date"])
        end = changes.get("end_date") or parse_date(doc["end_date"])
        if "payment_plan" in data.model_fields_set:
            plan = self._plan(data.payment_plan, amount, start)
        elif len(doc["payment_plan"]) == 1 and "amount_fen" in changes:
            plan = self._plan(None, amount, parse_date(doc["payment_plan"][0]["due_date"]))  # the implicit single instalment follows the amount
        else:
            plan = doc["payment_plan"]
        self._check_terms(amount, start, end, plan)
        for key in ("start_date", "end_date"):
            if key in changes:
                changes[key] = changes[key].isoformat()
        attachments = changes.pop("attachments", None)
        if attachments is not None and self._uploads is not None:  # the draft's whole list, checked before anything is written
            changes["attachments"] = await self._uploads.check(actor, attachments, kind="contract", target_id=doc["_id"])
        new = await self._replace(doc, {**changes, "payment_plan": plan, "next_due": next_due(plan)})
        if attachments and self._uploads is not None:
            await self._uploads.attach(actor, attachments, kind="contract", target_id=doc["_id"])
        await self._leads.add_event(doc["lead_id"], "contract_updated", actor, {"contract_id": doc["_id"], "fields": sorted(data.model_fields_set - {"version"})})
        return new

    async def readable(self, actor: Actor, contract_id: str) -> bool:
        """Who may read a contract's attachments: whoever may see the contract (its scope, its approvers)."""
        try:
            return await self.find(actor, contract_id) is not None
        except NotFound:
            return False

    # ------------------------------------------------------------ approval chains
    @staticmethod
    def tier_for(amount: int, tiers: builtins.list[ApprovalTier]) -> ApprovalTier:
        """The first tier whose ``max_fen`` covers ``amount``, of the team's tiers (team settings,
        ``approval.tiers``; the environment's MPCRM_APPROVAL_THRESHOLDS for a team that set none)."""
        tiers = sorted(tiers, key=lambda t: (t.max_fen is None, t.max_fen or 0))
        for tier in tiers:
            if tier.max_fen is None or amount <= tier.max_fen:
                return tier
        return tiers[-1]  # above every bound: the strictest tier configured

    async def _build_steps(self, contract: dict, submitter: Actor, now: datetime) -> builtins.list[dict]:
        """Resolve each configured step to people. Nobody approves their own contract: the owner and
        the submitter are left out; an empty step passes to the next one, and an empty last step to
        the admins."""
        tier = self.tier_for(contract["amount_fen"], (await self._team_settings(contract.get("team_id"))).approval.tiers)
        excluded = {contract["owner_id"], submitter.id}
        named = {u for rule in tier.steps for u in rule.users}
        named_oids = [o for o in (maybe_oid(u) for u in named) if o]
        team_oid_filter = contract.get("team_id") or "-"
        # One read for every candidate: the team's managers, the admins and the named users.
        ors: list[dict] = [{"role": "admin", "active": True}]
        if any(r.type == "manager" for r in tier.steps):
            ors.append({"team_id": team_oid_filter, "role": "manager", "active": True})
        if named_oids:
            ors.append({"_id": {"$in": named_oids}})
        if named:
            ors.append({"username": {"$in": sorted(named)}})
        users = await self._users.find({"$or": ors}, {"name": 1, "role": 1, "team_id": 1, "active": 1, "username": 1}).to_list(None)
        by_id = {str(u["_id"]): u for u in users if u.get("active")}
        ref = {**{u.get("username"): i for i, u in by_id.items() if u.get("username")}, **{i: i for i in by_id}}  # a user id or a username
        admins = sorted(i for i, u in by_id.items() if u["role"] == "admin" and i not in excluded)
        managers = sorted(i for i, u in by_id.items() if u["role"] == "manager" and u.get("team_id") == contract.get("team_id") and i not in excluded)

        steps: list[dict] = []
        for rule in tier.steps:
            if rule.type == "manager":
                people = managers
            elif rule.type == "admin":
                people = admins
            else:
                named_ids = [ref[u] for u in rule.users if u in ref]
                people = [u for u in dict.fromkeys(named_ids) if by_id[u]["role"] in ("manager", "admin") and u not in excluded]
            note = None
            if not people:
                note = "no eligible approver (own contract or nobody configured)"
            holder = rule.type if rule.type in ("manager", "admin") else NAMED
            steps.append({"type": rule.type, "mode": "all" if rule.type == "all_of" else "any", "holder": holder, "approvers": list(people), "note": note})
        if steps and not steps[-1]["approvers"]:
            # The last step has nobody: an admin decides instead (unless an earlier step already has someone).
            if admins:
                steps[-1].update(approvers=admins, mode="any", holder="admin", note=(steps[-1]["note"] or "") + "; passed to the admins")
            elif any(s["approvers"] for s in steps):
                pass
        if not any(s["approvers"] for s in steps):
            raise Conflict("contract.no_approver")
        out = []
        for index, step in enumerate(steps):
            out.append({
                "index": index,
                "type": step["type"],
                "mode": step["mode"],
                # Who decides: "manager" / "admin" — whoever holds that role (in the contract's team)
                # when deciding; "named" — the people in ``approvers``. For a role step ``approvers``
                # is who held the role at submission (they are notified when the step starts).
                "holder": step["holder"],
                "approvers": step["approvers"],
                "approver_names": {u: by_id[u].get("name", "") for u in step["approvers"]},
                "approved_by": [],
                "state": "waiting" if step["approvers"] else "skipped",
                "note": step["note"],
                "started_at": None,
                "decided_at": None,
                "decisions": [],
            })
        return out

    def _step_key(self, contract: dict, step: dict) -> str:
        return f"{contract['round']}.{step['index']}"

    def _pending_notes(self, contract: dict, step: dict, now: datetime) -> builtins.list[dict]:
        amount = contract["amount_fen"] / 100
        return [
            notification(
                user_id, "approval_pending", "合同待审批",
                f"{contract.get('submitter_name') or ''} 提交的合同《{contract['title']}》（{contract.get('lead_name', '')}，¥{amount:,.2f}）等待您审批",
                f"approval:{contract['_id']}:{self._step_key(contract, step)}:{user_id}",
                data={"contract_id": contract["_id"], "step": step["index"]},
            )
            for user_id in step["approvers"]
        ]

    @staticmethod
    def _activate_step(contract: dict, start_index: int, now: datetime) -> dict | None:
        """Make the next step with approvers current; None when every step is done."""
        for step in contract["steps"][start_index:]:
            if step["state"] == "waiting":
                step["state"] = "current"
                step["started_at"] = now
                contract["current_step"] = step["index"]
                contract["current_role"] = step.get("holder") or NAMED
                contract["current_approvers"] = list(step["approvers"])
                return step
        contract["current_step"] = None
        contract["current_role"] = None
        contract["current_approvers"] = []
        return None

    async def submit(self, actor: Actor, contract_id: str, version: int) -> dict:
        doc = await self._in_scope(actor, contract_id)
        if doc["status"] != "draft":
            raise Conflict("contract.not_draft")
        if doc["version"] != version:
            raise VersionMismatch("contract.version_mismatch")
        now = self._clock.now()
        lead = await self._leads_col.find_one({"_id": doc["lead_id"]}, {"name": 1})
        new = {**doc}
        if doc["steps"]:
            new["past_rounds"] = [*doc.get("past_rounds", []), {"round": doc["round"], "steps": doc["steps"]}]
        new.update(
            status="pending", round=doc["round"] + 1, submitted_by=actor.id, submitter_name=actor.name or actor.id,
            submitted_at=now, lead_name=(lead or {}).get("name", doc.get("lead_name", "")), return_comment=None,
        )
        new["steps"] = await self._build_steps(new, actor, now)
        # Named approvers may read the contract they are asked to sign; role steps follow the role.
        new["approver_ids"] = sorted({*doc.get("approver_ids", []), *(u for s in new["steps"] if s["holder"] == NAMED for u in s["approvers"])})
        first = self._activate_step(new, 0, now)
        saved = await self._replace(doc, new)
        await self._leads.add_event(doc["lead_id"], "contract_submitted", actor, {"contract_id": doc["_id"], "title": doc["title"], "amount_fen": doc["amount_fen"], "steps": len(new["steps"])}, at=now)
        await self._audit.record(actor, "contract.submit", target_type="contract", target_id=doc["_id"], details={"round": new["round"]})
        if first:
            await self._notifications.notify(self._pending_notes(saved, first, now), now)
        return saved

    # ------------------------------------------------------------ decisions
    async def decide(self, actor: Actor, contract_id: str, decision: str, version: int, comment: str) -> tuple[Actor, dict]:
        """Approve, reject or return. Returns the caller and the contract."""
        doc = await self.get(actor, contract_id)
        if doc["status"] != "pending":
            raise Conflict("contract.not_pending", params={"status": doc["status"]})
        if doc["version"] != version:
            raise VersionMismatch("contract.version_mismatch")
        if not self.holds_current_step(actor, doc):
            raise Forbidden("contract.not_your_step")
        comment = (comment or "").strip()
        if decision in ("reject", "return") and not comment:
            raise Invalid("contract.comment_required", details=[detail("comment", "required", text="say_why")])
        now = self._clock.now()
        new = {**doc, "steps": [dict(s) for s in doc["steps"]]}
        step = new["steps"][doc["current_step"]]
        step["decisions"] = [*step.get("decisions", []), {"user_id": actor.id, "name": actor.name, "decision": decision, "comment": comment, "at": now}]
        reached: dict | None = None
        if decision == "approve":
            step["approved_by"] = [*step.get("approved_by", []), actor.id]
            remaining = [u for u in new["current_approvers"] if u != actor.id] if step["mode"] == "all" else []
            if remaining:
                new["current_approvers"] = remaining
            else:
                step["state"] = "approved"
                step["decided_at"] = now
                reached = self._activate_step(new, step["index"] + 1, now)
                if reached is None:
                    new["status"] = "active"
                    new["activated_at"] = now
        else:
            step["state"] = "rejected" if decision == "reject" else "returned"
            step["decided_at"] = now
            new["current_step"] = None
            new["current_role"] = None
            new["current_approvers"] = []
            new["status"] = "rejected" if decision == "reject" else "draft"
            if decision == "return":
                new["return_comment"] = comment
        saved = await self._replace(doc, new)
        await self._audit.record(actor, f"contract.{decision}", target_type="contract", target_id=doc["_id"],
                                 details={"step": step["index"], "round": doc["round"], "comment": comment, "status": saved["status"]})
        await self._leads.add_event(doc["lead_id"], EVENT_KINDS[decision], actor,
                                    {"contract_id": doc["_id"], "title": doc["title"], "step": step["index"], "comment": comment, "status": saved["status"]}, at=now)
        outcome = {"approve": "通过" if saved["status"] == "active" else f"第 {step['index'] + 1} 步通过", "reject": "驳回", "return": "退回"}[decision]
        notes = [notification(
            saved["submitted_by"], "approval_decided", f"合同审批{outcome}",
            f"{actor.name or '审批人'} {outcome}了合同《{doc['title']}》" + (f"：{comment}" if comment else ""),
            f"approval-decision:{doc['_id']}:{saved['version']}",
            data={"contract_id": doc["_id"], "decision": decision, "status": saved["status"]},
        )] if saved.get("submitted_by") else []
        if reached is not None:
            notes += self._pending_notes(saved, reached, now)
        await self._notifications.notify(notes, now)
        if saved["status"] == "active":
            await self._on_activated(saved, actor)
        elif saved["status"] == "rejected" and saved.get("renews"):
            await self._col.update_one({"_id": saved["renews"], "renewed_by": saved["_id"]}, {"$set": {"renewed_by": None}, "$inc": {"version": 1}})
        return actor, saved

    async def _on_activated(self, contract: dict, actor: Actor) -> None:
        """The lead becomes a customer (or retained, for a renewal), walking the lifecycle if needed."""
        renews_ended_on = None
        if contract.get("renews"):
            # Atomic with end_contracts' own update of the old contract: exactly one of the two sees
            # the other, so a renewal is counted once — by the ended event, or here when it came late.
            old = await self._col.find_one_and_update({"_id": contract["renews"]}, {"$set": {"renewal_active": True}, "$inc": {"version": 1}},
                                                      projection={"status": 1, "end_date": 1})
            if old is not None and old.get("status") == "ended":
                renews_ended_on = old.get("end_date")
            sale = "renewal"
        else:
            earlier = await self._col.find_one({"lead_id": contract["lead_id"], "status": {"$in": ["active", "ended"]}, "_id": {"$ne": contract["_id"]}}, {"_id": 1})
            sale = "repurchase" if earlier is not None else "new"
        lead = await self._leads_col.find_one({"_id": contract["lead_id"]})
        # Its id derived from the contract: the start-up upgrade (upgrade_money_events) never writes it again.
        await self._leads.add_events_once([signed_event(contract, lead, actor, sale, renews_ended_on)])
        if lead is None:
            return
        stage = lead["stage"]
        if contract.get("renews"):
            target = "retained" if stage != "retained" else None
        elif stage in CUSTOMER_STAGES:
            target = None
        elif stage == "churned":
            target = "won_back"
        else:
            target = "customer"
        path = stage_path(stage, target) if target else []
        reason = f"合同《{contract['title']}》审批通过"
        if path is None:
            await self._leads.add_event(lead["_id"], "contract_stage_unchanged", actor, {"contract_id": contract["_id"], "stage": stage, "wanted": target, "reason": "no allowed move"})
            return
        for to in path:
            lead = await self._leads.move_stage(lead, to, actor, reason=reason)

    # ------------------------------------------------------------ hand-over (server/services/handover.py)
    async def owned_by_status(self, user_id: str) -> dict[str, int]:
        """How many contracts ``user_id`` owns, by status."""
        counts: dict[str, int] = {}
        for doc in await self._col.find({"owner_id": user_id}, {"status": 1}).to_list(None):
            counts[doc["status"]] = counts.get(doc["status"], 0) + 1
        return counts

    async def hand_over(self, from_user_id: str, to_user_id: str, limit: int) -> int:
        """Up to ``limit`` contracts of ``from_user_id`` (every status: renewals and payments of
        ended ones still need an owner) get ``to_user_id`` as their owner. Approval steps are left as
        they are: a role step is decided by whoever holds the role, named approvers stay named.
        Idempotent: a contract moved is no longer the old owner's. Returns how many moved."""
        ids = [c["_id"] for c in await self._col.find({"owner_id": from_user_id}, {"_id": 1}).limit(limit).to_list(None)]
        if not ids:
            return 0
        result = await self._col.update_many(
            {"_id": {"$in": ids}, "owner_id": from_user_id},
            {"$set": {"owner_id": to_user_id}, "$currentDate": {"updated_at": True}, "$inc": {"version": 1}},
        )
        return result.modified_count

    # ------------------------------------------------------------ the inbox
    async def upgrade_pending(self) -> int:
        """Contracts submitted before steps followed whoever holds the role now carry no
        ``current_role``: they stay with the approvers named when they were submitted, and this
        marks them so, which puts them back in those approvers' inboxes. Run at start-up; a no-op
        once done."""
        result = await self._col.update_many({"status": "pending", "current_role": {"$exists": False}}, {"$set": {"current_role": NAMED}})
        return result.modified_count

    async def upgrade_money_events(self, batch: int = 500) -> int:
        """Contracts signed, paid or ended before the revenue counters existed have no
        ``contract_signed`` / ``payment_recorded`` / ``contract_ended`` events, so the fold never
        counted them. Run at start-up: each active or ended contract not yet looked at
        (``money_events`` unset) gets the events it lacks, at their original times (activation,
        recording of each payment, the day after its end), with the ids the live paths derive
        (``money_events.py``), and is marked. The fold then counts them like any late event, and a
        rebuild, which folds the same events, equals the counters. Returns the events written; a
        second run writes nothing (marked contracts are skipped, and an event already there — by
        any id — is not written again)."""
        if self._events_col is None:
            return 0
        written, last = 0, None
        while True:
            filter_: dict[str, Any] = {"status": {"$in": ["active", "ended"]}, "money_events": {"$exists": False}}
            if last is not None:
                filter_["_id"] = {"$gt": last}
            todo = await self._col.find(filter_).sort("_id", 1).limit(batch).to_list(None)
            if not todo:
                return written
            last = todo[-1]["_id"]
            lead_ids = sorted({c["lead_id"] for c in todo})
            signed = await self._col.find({"lead_id": {"$in": lead_ids}, "status": {"$in": ["active", "ended"]}},
                                          {"lead_id": 1, "activated_at": 1, "renews": 1, "end_date": 1, "status": 1}).to_list(None)
            leads = {d["_id"]: d for d in await self._leads_col.find({"_id": {"$in": lead_ids}}, {"source": 1}).to_list(None)}
            have = set()
            for e in await self._events_col.find({"lead_id": {"$in": lead_ids}, "kind": {"$in": ["contract_signed", "payment_recorded", "contract_ended"]}},
                                                 {"kind": 1, "data.contract_id": 1, "data.payment_id": 1}).to_list(None):
                data = e.get("data") or {}
                have.add((e["kind"], data.get("payment_id") if e["kind"] == "payment_recorded" else data.get("contract_id")))
            events: list[dict] = []
            for c in todo:
                events.extend(self._missing_money_events(c, signed, leads.get(c["lead_id"]), have))
            if events:
                written += await self._leads.add_events_once(events)
            await self._col.update_many({"_id": {"$in": [c["_id"] for c in todo]}}, {"$set": {"money_events": 1}})

    def _missing_money_events(self, contract: dict, signed: builtins.list[dict], lead: dict | None, have: set) -> builtins.list[dict]:
        """What the live paths would have written for ``contract`` and are not on the timeline.
        The kind of sale and the renewal facts follow the live rules: a renewal renews; a
        repurchase had an earlier signed contract; a renewal signed after the day the old contract
        ended is counted on that day (``renews_ended_on``), one signed earlier by the old
        contract's ``contract_ended`` (``renewed``)."""
        tz = self._settings.tz
        activated = contract.get("activated_at")

        def day_of(at: datetime) -> str:
            return at.astimezone(tz).date().isoformat()

        by_id = {c["_id"]: c for c in signed}
        out: list[dict] = []
        if activated is not None and ("contract_signed", contract["_id"]) not in have:
            renews_ended_on = None
            if contract.get("renews"):
                sale = "renewal"
                old = by_id.get(contract["renews"])
                if old is not None and old.get("status") == "ended" and day_of(activated) > old["end_date"]:
                    renews_ended_on = old["end_date"]
            else:
                earlier = any(c["lead_id"] == contract["lead_id"] and c["_id"] != contract["_id"] and c.get("activated_at") is not None
                              and c["activated_at"] < activated for c in signed)
                sale = "repurchase" if earlier else "new"
            out.append(signed_event(contract, lead, SYSTEM, sale, renews_ended_on))
        for payment in contract.get("payments") or []:
            if ("payment_recorded", payment["id"]) not in have and payment.get("recorded_at") is not None:
                out.append(payment_event(contract, payment, lead, SYSTEM))
        if contract["status"] == "ended" and ("contract_ended", contract["_id"]) not in have:
            renewed = any(c.get("renews") == contract["_id"] and c.get("activated_at") is not None and day_of(c["activated_at"]) <= contract["end_date"]
                          for c in signed)
            out.append(ended_event(contract, renewed, SYSTEM, ended_at(contract["end_date"], tz), tz))
        return out

    async def inbox(self, actor: Actor, limit: int, cursor: str | None) -> Page:
        """What waits for the caller now (``holds_current_step``): steps of the caller's role in
        their team (managers) or anywhere (admins), and named steps still waiting for the caller.
        One query; the names were copied onto the contract at submit."""
        held: list[dict] = [{"current_role": NAMED, "current_approvers": actor.id}]
        if actor.is_manager and actor.team_id:
            held.append({"current_role": "manager", "team_id": actor.team_id})
        if actor.is_admin:
            held.append({"current_role": "admin"})
        # The caller's own contracts (owner or submitter) are dropped below, not with $ne: nx-27017
        # answers $ne on a null field (a contract of an unowned lead) with nothing.
        filter_ = {"status": "pending", "$or": held}
        page = await paginate(
            self._col, filter_, limit=limit, cursor=cursor, descending=False,
            projection={"title": 1, "lead_id": 1, "lead_name": 1, "amount_fen": 1, "steps": 1, "current_step": 1, "submitted_by": 1, "submitter_name": 1, "version": 1,
                        "status": 1, "owner_id": 1, "team_id": 1, "current_role": 1, "current_approvers": 1},
        )
        items = []
        for c in page.items:
            if not self.holds_current_step(actor, c):
                continue
            step = c["steps"][c["current_step"]]
            items.append({
                "contract_id": c["_id"], "title": c["title"], "lead_id": c["lead_id"], "lead_name": c.get("lead_name", ""),
                "amount_fen": c["amount_fen"], "step": step["index"], "step_type": step["type"], "steps_total": len(c["steps"]),
                "submitter_id": c.get("submitted_by") or "", "submitter_name": c.get("submitter_name") or "",
                "waiting_since": step["started_at"], "version": c["version"],
            })
        page.items = items
        return page

    # ------------------------------------------------------------ renewals
    async def renew(self, actor: Actor, contract_id: str) -> dict:
        old = await self._in_scope(actor, contract_id)
        if old["status"] not in ("active", "ended"):
            raise Conflict("contract.not_renewable")
        if old.get("renewed_by"):
            raise Conflict("contract.already_renewed", details=[detail("renewed_by", "exists", text="renewed_by", value=old["renewed_by"], contract_id=old["renewed_by"])])
        new_start, new_end, plan = _renewal_terms(old)
        data = ContractCreate.model_construct(
            lead_id=old["lead_id"], title=old["title"], amount_fen=old["amount_fen"], start_date=new_start,
            end_date=new_end, notes=old.get("notes"), payment_plan=[InstalmentIn.model_construct(**p) for p in plan],
        )
        claimed = await self._col.find_one_and_update(
            {"_id": old["_id"], "renewed_by": None, "status": {"$in": ["active", "ended"]}},
            {"$set": {"renewed_by": "pending"}, "$inc": {"version": 1}},
        )
        if claimed is None:
            raise Conflict("contract.already_renewed")
        try:
            draft = await self.create(actor, data, renews=old)
        except BaseException:
            await self._col.update_one({"_id": old["_id"], "renewed_by": "pending"}, {"$set": {"renewed_by": None}})
            raise
        await self._col.update_one({"_id": old["_id"], "renewed_by": "pending"}, {"$set": {"renewed_by": draft["_id"]}})
        return draft
