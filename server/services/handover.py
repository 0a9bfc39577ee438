"""Hand-over (交接): when a rep leaves, their leads, contracts, tasks and tickets go to someone else.

``preview`` counts what a user holds and what a hand-over would move; ``start`` records a
``handovers`` document (``status: running``, ``progress: {kind: {total, done}}``) and works it in
the background in batches of ``BATCH``; ``GET /handovers/{id}`` shows the progress.

Resumable and never half-done silently:

- each batch is idempotent: it moves only what the old user still holds, with conditional writes
  (a lead already moved is not moved again; see ``LeadService.hand_over_batch`` for how a batch cut
  short by a crash is finished exactly once);
- the worker holding a hand-over refreshes ``heartbeat_at`` with every batch (and only while it
  still holds it: ``worker`` in the filter); a hand-over whose heartbeat is older than ``STALE`` is
  taken over by the ``handover`` job (jobs/handover.py, under the job registry's lease), which
  continues where it stopped;
- a batch that raises marks the hand-over ``failed`` with the reason and the progress so far;
  posting the same hand-over again moves what is left.

Deactivation (``update_user``): a user who still holds work is not deactivated (409
``user.has_open_work`` with the counts) unless their team's ``handover.on_deactivate`` is
``pool``: then they are deactivated at once, and a hand-over sends their open leads to the team's
pool and everything else (customers, closed leads, contracts, tasks, tickets) to the team's
manager, who answers for the team's accounts (docs/features.md, "Hand-over").
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from server.actor import Actor, require_role
from server.clock import Clock
from server.errors import Conflict, Forbidden, Invalid, NotFound, VersionMismatch, detail
from server.ids import maybe_oid, parse_oid
from server.schemas.allocation import BULK_ASSIGN_LIMIT, BulkAssignIn
from server.schemas.handover import KINDS, HandoverIn
from server.schemas.users import UserUpdate
from server.services.audit import AuditService
from server.services.lifecycle import OPEN_STAGES
from server.services.notifications import NotificationService, notification
from server.schemas.tickets import OPEN_STATUSES as OPEN_TICKET_STATUSES

log = logging.getLogger("mpcrm.handover")

BATCH = 500
STALE = timedelta(minutes=2)
LIVE_CONTRACTS = ("draft", "pending", "active")


def _reason(text: str | None, actor_name: str) -> dict[str, str]:
    if text:
        return {"zh-CN": text, "en": text}
    return {"zh-CN": f"交接（{actor_name}）", "en": f"hand-over ({actor_name})"}


class HandoverService:
    def __init__(
        self, *, handovers, users_view, leads_view, contracts_view, tasks_view, rules_view, clock: Clock, users, leads, contracts, tasks,
        allocation, notifications: NotificationService, audit: AuditService, tickets=None, tickets_view=None,
    ) -> None:
        self._col = handovers
        self._users_col = users_view  # read-only: the people involved; UserService writes users
        self._leads_col = leads_view  # read-only: counts; LeadService moves leads
        self._contracts_col = contracts_view
        self._tasks_col = tasks_view
        self._rules = rules_view
        self._clock = clock
        self._users = users
        self._leads = leads
        self._contracts = contracts
        self._tasks = tasks
        self._allocation = allocation
        self._notifications = notifications
        self._audit = audit
        self._tickets = tickets  # TicketService, where it offers hand_over(...)
        self._tickets_col = tickets_view
        self._background: set[asyncio.Task] = set()

    # ------------------------------------------------------------ what can be handed over
    def kinds(self) -> tuple[str, ...]:
        """The kinds this installation can hand over: tickets only where the ticket service can."""
        return tuple(k for k in KINDS if k != "tickets" or self._tickets_ready())

    def _tickets_ready(self) -> bool:
        return self._tickets is not None and callable(getattr(self._tickets, "hand_over", None))

    async def _open_tickets(self, user_id: str) -> int | None:
        if not self._tickets_ready() or self._tickets_col is None:
            return None
        return await self._tickets_col.count_documents({"assignee_id": user_id, "status": {"$in": list(OPEN_TICKET_STATUSES)}})

    async def work_of(self, user_id: str) -> dict[str, Any]:
        """What ``user_id`` holds: leads (and how many are open), contracts by status, open tasks
        (follow-ups apart: they move with their lead), open tickets."""
        leads = await self._leads_col.count_documents({"owner_id": user_id})
        open_leads = await self._leads_col.count_documents({"owner_id": user_id, "stage": {"$in": list(OPEN_STAGES)}}) if leads else 0
        by_status = await self._contracts.owned_by_status(user_id)
        tasks = await self._tasks_col.count_documents({"assignee_id": user_id, "status": "open"})
        followups = await self._tasks_col.count_documents({"assignee_id": user_id, "status": "open", "kind": "followup"}) if tasks else 0
        return {
            "leads": leads, "open_leads": open_leads, "contracts": {"total": sum(by_status.values()), "by_status": by_status},
            "tasks": tasks - followups, "followup_tasks": followups, "tickets": await self._open_tickets(user_id),
        }

    @staticmethod
    def open_work(counts: dict[str, Any]) -> dict[str, int]:
        """The work that stops a deactivation: live leads, live contracts, open tasks and tickets."""
        live_contracts = sum(n for s, n in counts["contracts"]["by_status"].items() if s in LIVE_CONTRACTS)
        work = {"leads": counts["leads"], "contracts": live_contracts, "tasks": counts["tasks"] + counts["followup_tasks"], "tickets": counts["tickets"] or 0}
        return {k: v for k, v in work.items() if v}

    # ------------------------------------------------------------ checks
    async def _check(self, actor: Actor, user_id: str, data: HandoverIn) -> tuple[dict, dict | None, dict | None]:
        """The user handed over, the person or rule receiving, all checked before anything is
        written. Managers: users of their own team, to their own team; admins: anyone to anyone."""
        require_role(actor, "admin", "manager")
        source = await self._users.get_user(actor, user_id)  # 404 outside a manager's team
        if source.get("role") not in ("rep", "manager", "admin"):
            raise Invalid("handover.bad_source", details=[detail("user_id", "customer", text="handover_staff_only")])
        if not actor.is_admin and source.get("role") == "admin":
            raise NotFound("user.not_found")
        if data.deactivate and not actor.is_admin:
            raise Forbidden("handover.deactivate_admin_only")
        if data.deactivate and str(source["_id"]) == actor.id:
            raise Invalid("user.cannot_deactivate_self", details=[detail("deactivate", "self", text="deactivate_self")])
        unknown = [k for k in data.include if k not in self.kinds()]
        if unknown:
            raise Invalid("handover.kind_unavailable", details=[detail("include", "unavailable", text="handover_kind_unavailable", value=",".join(unknown))])
        target = rule = None
        if data.to_user_id is not None:
            if data.to_user_id == str(source["_id"]):
                raise Invalid("handover.to_self", details=[detail("to_user_id", "self", text="handover_to_self")])
            oid = maybe_oid(data.to_user_id)
            target = await self._users_col.find_one({"_id": oid}, {"name": 1, "role": 1, "team_id": 1, "active": 1}) if oid else None
            if target is None or target.get("role") not in ("rep", "manager"):
                raise Invalid("handover.bad_target", details=[detail("to_user_id", "not_staff", text="handover_target_staff")])
            if not target.get("active"):
                raise Invalid("handover.bad_target", details=[detail("to_user_id", "inactive", text="handover_target_inactive")])
            if not actor.is_admin and (not actor.team_id or target.get("team_id") != actor.team_id):
                raise Invalid("handover.bad_target", details=[detail("to_user_id", "outside_team", text="handover_target_outside_team")])
        else:
            if [k for k in data.include if k != "leads"]:
                raise Invalid("handover.rule_leads_only", details=[detail("include", "rule_leads_only", text="handover_rule_leads_only")])
            oid = maybe_oid(data.rule_id or "")
            rule = await self._rules.find_one({"_id": oid}) if oid else None
            if rule is None or rule.get("kind", "lead") != "lead" or rule.get("team_id") != source.get("team_id") \
                    or (not actor.is_admin and rule.get("team_id") != actor.team_id):
                raise Invalid("handover.bad_rule", details=[detail("rule_id", "not_team_rule", text="handover_rule_of_team")])
            if not rule.get("active", True):
                raise Invalid("handover.bad_rule", details=[detail("rule_id", "inactive", text="handover_rule_inactive")])
        return source, target, rule

    # ------------------------------------------------------------ preview
    async def preview(self, actor: Actor, user_id: str, data: HandoverIn) -> dict:
        source, target, rule = await self._check(actor, user_id, data)
        uid = str(source["_id"])
        counts = await self.work_of(uid)
        moves = {
            "leads": counts["leads"] if "leads" in data.include else 0,
            "contracts": counts["contracts"]["total"] if "contracts" in data.include else 0,
            "tasks": counts["tasks"] if "tasks" in data.include else 0,
            "followup_tasks": counts["followup_tasks"] if "leads" in data.include else 0,
            "tickets": (counts["tickets"] or 0) if "tickets" in data.include else 0,
        }
        skipped = []
        for kind, count in (("leads", counts["leads"]), ("contracts", counts["contracts"]["total"]), ("tasks", counts["tasks"]), ("tickets", counts["tickets"])):
            if count is None:
                skipped.append({"kind": kind, "count": 0, "reason": "not_available"})
            elif count and kind not in data.include:
                skipped.append({"kind": kind, "count": count, "reason": "not_included"})
        if counts["followup_tasks"] and "leads" not in data.include:
            skipped.append({"kind": "followup_tasks", "count": counts["followup_tasks"], "reason": "follows_lead"})
        described: dict = {}  # _check gives a target person or a rule
        if target is not None:
            described = {"user_id": str(target["_id"]), "name": target.get("name")}
        elif rule is not None:
            described = {"rule_id": str(rule["_id"]), "rule_name": rule.get("name"), "members": list(rule.get("members") or [])}
        return {"from_user_id": uid, "include": list(data.include), "counts": counts, "target": described, "moves": moves, "skipped": skipped}

    # ------------------------------------------------------------ run
    async def start(self, actor: Actor, user_id: str, data: HandoverIn, *, background: bool = True, handover_id: str | None = None) -> dict:
        """Record the hand-over (under ``handover_id``, given one: an Idempotency-Key) and work it in
        the background (``background=False``: only record it; the caller runs it, as tests do)."""
        source, target, rule = await self._check(actor, user_id, data)
        return await self._begin(actor, source, to_user_id=str(target["_id"]) if target else None, rule=rule, include=list(data.include),
                                 deactivate=data.deactivate, reason=data.reason, pool=False, background=background, handover_id=handover_id)

    async def find(self, actor: Actor, handover_id: str) -> dict | None:
        """The hand-over, None while there is none (an Idempotency-Key replay)."""
        try:
            return await self.get(actor, handover_id)
        except NotFound:
            return None

    async def _begin(self, actor: Actor, source: dict, *, to_user_id: str | None, rule: dict | None, include: list[str], deactivate: bool,
                     reason: str | None, pool: bool, background: bool, handover_id: str | None = None) -> dict:
        uid = str(source["_id"])
        counts = await self.work_of(uid)
        totals = {"leads": counts["leads"], "contracts": counts["contracts"]["total"], "tasks": counts["tasks"], "tickets": counts["tickets"] or 0}
        now = self._clock.now()
        worker = uuid.uuid4().hex
        doc: dict[str, Any] = {
            "_id": (maybe_oid(handover_id) if handover_id else None) or ObjectId(), "from_user_id": uid, "from_team_id": source.get("team_id"), "to_user_id": to_user_id,
            "rule_id": str(rule["_id"]) if rule else None, "pool": pool, "include": include, "deactivate": deactivate,
            "reason": _reason(reason, actor.name or actor.id), "status": "running",
            "progress": {k: {"total": totals[k], "done": 0} for k in include}, "seq": 0, "batch": None, "failure": None,
            "running_for": uid,  # unique while running: one hand-over of a user at a time
            "worker": worker, "created_by": actor.id,
            "actor": {"id": actor.id, "role": actor.role, "team_id": actor.team_id, "name": actor.name},
            "created_at": now, "updated_at": now, "heartbeat_at": now, "finished_at": None,
        }
        try:
            await self._col.insert_one(doc)
        except DuplicateKeyError:
            running = await self._col.find_one({"running_for": uid}, {"_id": 1})
            raise Conflict("handover.in_progress", details=[detail("user_id", "running", text="handover_running", value=str((running or {}).get("_id", "")))]) from None
        await self._audit.record(actor, "user.handover", target_type="user", target_id=uid,
                                 details={"handover_id": str(doc["_id"]), "to_user_id": to_user_id, "rule_id": doc["rule_id"], "pool": pool, "include": include})
        if background:
            task = asyncio.get_running_loop().create_task(self.run(doc["_id"], worker))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return doc

    async def wait_idle(self) -> None:
        """Wait for hand-overs running in this process (shutdown, tests)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def get(self, actor: Actor, handover_id: str) -> dict:
        require_role(actor, "admin", "manager")
        doc = await self._col.find_one({"_id": parse_oid(handover_id, "handover.not_found")})
        if doc is None or (not actor.is_admin and (not actor.team_id or doc.get("from_team_id") != actor.team_id)):
            raise NotFound("handover.not_found")
        return doc

    async def _beat(self, doc: dict, worker: str, **fields: Any) -> bool:
        """Save progress and refresh the heartbeat, only while ``worker`` still holds the hand-over."""
        result = await self._col.update_one(
            {"_id": doc["_id"], "worker": worker, "status": "running"},
            {"$set": {"progress": doc["progress"], "seq": doc["seq"], "batch": doc.get("batch"), **fields},
             "$currentDate": {"heartbeat_at": True, "updated_at": True}},
        )
        return result.matched_count == 1

    async def run(self, handover_id: ObjectId, worker: str, max_batches: int | None = None) -> str:
        """Work the hand-over until done (or ``max_batches`` batches, to test a stop in the
        middle). Returns its status afterwards (``running`` when stopped early, ``taken`` when
        another worker holds it)."""
        doc = await self._col.find_one({"_id": handover_id, "worker": worker, "status": "running"})
        if doc is None:
            return "taken"
        actor = Actor(**doc["actor"])
        if doc["seq"]:  # taken over: what the stopped worker moved after its last save counts too
            left = await self.work_of(doc["from_user_id"])
            remaining = {"leads": left["leads"], "contracts": left["contracts"]["total"], "tasks": left["tasks"], "tickets": left["tickets"] or 0}
            for kind, progress in doc["progress"].items():
                if not (kind == "leads" and doc.get("batch")):  # a recorded batch counts itself when it is run again
                    progress["done"] = max(progress["done"], progress["total"] - remaining[kind])
        batches = 0
        try:
            for kind in doc["include"]:
                while max_batches is None or batches < max_batches:
                    moved, more = await self._batch(doc, kind, actor, worker)
                    batches += 1
                    progress = doc["progress"][kind]
                    progress["done"] += moved
                    progress["total"] = max(progress["total"], progress["done"])
                    doc["seq"] += 1
                    if not await self._beat(doc, worker):
                        return "taken"
                    if not more:
                        break
                else:
                    return "running"
            for kind in doc["include"]:  # whatever arrived meanwhile and was moved too counts
                doc["progress"][kind]["total"] = doc["progress"][kind]["done"]
            await self._finish(doc, worker, actor)
            return "done"
        except _Taken:
            return "taken"
        except Exception as exc:
            log.exception("hand-over failed", extra={"handover_id": str(handover_id)})
            await self._col.update_one(
                {"_id": doc["_id"], "worker": worker, "status": "running"},
                {"$set": {"status": "failed", "progress": doc["progress"], "failure": f"{type(exc).__name__}: {exc}"[:300]},
                 "$unset": {"running_for": ""}, "$currentDate": {"updated_at": True, "finished_at": True}},
            )
            return "failed"

    async def _batch(self, doc: dict, kind: str, actor: Actor, worker: str) -> tuple[int, bool]:
        """One batch of ``kind``: ``(how many moved, whether to go on)``."""
        uid, to = doc["from_user_id"], doc.get("to_user_id")
        if kind == "leads":
            if doc.get("rule_id"):
                moved = await self._rule_batch(doc, actor, self._clock.now())
                return moved, moved > 0
            return await self._lead_batch(doc, actor, worker)
        if kind == "contracts":
            moved = await self._contracts.hand_over(uid, to, BATCH)
        elif kind == "tasks":
            target = await self._users_col.find_one({"_id": maybe_oid(to)}, {"team_id": 1}) if to else None
            moved = await self._tasks.hand_over(uid, to, (target or {}).get("team_id"), BATCH)
        elif kind == "tickets":
            moved = await self._tickets.hand_over(uid, to, actor, BATCH)
        else:
            raise ValueError(f"unknown kind {kind}")
        return moved, moved > 0

    async def _lead_batch(self, doc: dict, actor: Actor, worker: str) -> tuple[int, bool]:
        """The next leads (open ones to the pool first, with ``pool``), recorded on the hand-over
        before they move: a batch a crash cut short is run again with the same leads and sequence
        number, which ``LeadService.hand_over_batch`` makes exact."""
        uid = doc["from_user_id"]
        batch = doc.get("batch")
        if not batch:
            ids: list[str] = []
            owner = doc.get("to_user_id")
            if doc.get("pool"):
                ids = await self._leads.owned_ids(uid, BATCH, list(OPEN_STAGES))
                owner = None if ids else owner
            if not ids:
                ids = await self._leads.owned_ids(uid, BATCH)
            if not ids:
                return 0, False
            batch = {"seq": doc["seq"] + 1, "ids": ids, "owner_id": owner}
            recorded = await self._col.update_one({"_id": doc["_id"], "worker": worker, "status": "running"}, {"$set": {"batch": batch}})
            if not recorded.matched_count:
                raise _Taken
            doc["batch"] = batch
        moved = await self._leads.hand_over_batch(
            lead_ids=batch["ids"], handover_id=str(doc["_id"]), previous_owner=uid, owner_id=batch["owner_id"], actor=actor,
            reason=doc["reason"], now=self._clock.now(), stamp=doc["created_at"], seq=batch["seq"],
        )
        doc["batch"] = None
        return moved, True

    async def _rule_batch(self, doc: dict, actor: Actor, now: datetime) -> int:
        """Leads through an allocation rule: the allocation engine's bulk assignment picks each
        lead's owner by the rule's strategy and members (``AllocationService.bulk_assign``). Only
        leads the old user still owns are given, and it moves each only if unchanged since read, so
        a repeated batch moves nothing twice. A batch that moves nothing while leads remain (nobody
        of the rule is available) fails the hand-over with that reason rather than stop silently."""
        ids = await self._leads.owned_ids(doc["from_user_id"], min(BATCH, BULK_ASSIGN_LIMIT))
        if not ids:
            return 0
        result = await self._allocation.bulk_assign(actor, BulkAssignIn(ids=ids, rule_id=doc["rule_id"], reason=doc["reason"]["zh-CN"][:200]))
        if not result["assigned"]:
            reasons = ", ".join(sorted({s["reason"] for s in result["skipped"]})) or "nothing assigned"
            raise RuntimeError(f"the rule assigned none of the {len(ids)} leads left ({reasons})")
        return result["assigned"]

    async def _finish(self, doc: dict, worker: str, actor: Actor) -> None:
        if not await self._beat(doc, worker):
            return
        if doc.get("deactivate"):
            await self._deactivate(doc["from_user_id"], actor)
        result = await self._col.update_one(
            {"_id": doc["_id"], "worker": worker, "status": "running"},
            {"$set": {"status": "done", "progress": doc["progress"]}, "$unset": {"running_for": ""}, "$currentDate": {"updated_at": True, "finished_at": True}},
        )
        if result.matched_count and doc.get("to_user_id"):
            moved = {k: v["done"] for k, v in doc["progress"].items() if v["done"]}
            if moved:
                counts = "，".join(f"{_KIND_NAMES[k]} {n}" for k, n in moved.items())
                await self._notifications.notify([notification(
                    doc["to_user_id"], "handover_received", "你接手了同事的工作", f"交接给你：{counts}", f"handover:{doc['_id']}",
                    data={"handover_id": str(doc["_id"]), **moved},
                )])

    async def _deactivate(self, user_id: str, actor: Actor) -> None:
        for _ in range(3):  # a concurrent edit of the user: read again
            user = await self._users.by_id(user_id)
            if user is None or not user.get("active"):
                return
            try:
                await self._users.update_user(actor, user_id, UserUpdate(active=False), user["version"])
                return
            except VersionMismatch:
                continue

    # ------------------------------------------------------------ the job
    async def resume_stalled(self, now: datetime, max_batches: int | None = None) -> dict:
        """Hand-overs whose worker stopped (no heartbeat for ``STALE``): taken over one by one (a
        conditional update on the worker seen, so of two takers one wins) and continued."""
        resumed, finished = 0, 0
        for doc in await self._col.find({"status": "running", "heartbeat_at": {"$lt": now - STALE}}, {"worker": 1}).limit(20).to_list(None):
            worker = uuid.uuid4().hex
            taken = await self._col.find_one_and_update(
                {"_id": doc["_id"], "status": "running", "worker": doc.get("worker")},
                {"$set": {"worker": worker}, "$currentDate": {"heartbeat_at": True}}, projection={"_id": 1}, return_document=ReturnDocument.AFTER,
            )
            if taken is None:
                continue
            resumed += 1
            finished += (await self.run(doc["_id"], worker, max_batches)) == "done"
        return {"resumed": resumed, "finished": finished}

    # ------------------------------------------------------------ deactivation
    async def update_user(self, actor: Actor, user_id: str, data: UserUpdate, version: int) -> dict:
        """``PATCH /users/{id}``: a deactivation of a user who still holds work needs a hand-over
        first (409 ``user.has_open_work`` with the counts), unless the team sends it to the pool."""
        require_role(actor, "admin")
        if data.active is not False:
            return await self._users.update_user(actor, user_id, data, version)
        user = await self._users.get_user(actor, user_id)
        if not user.get("active") or user.get("role") not in ("rep", "manager", "admin") or str(user["_id"]) == actor.id:
            return await self._users.update_user(actor, user_id, data, version)  # its own checks answer
        uid = str(user["_id"])
        work = self.open_work(await self.work_of(uid))
        if not work:
            return await self._users.update_user(actor, user_id, data, version)
        if user["version"] != version:
            raise VersionMismatch("user.version_mismatch")
        team_id = user.get("team_id")
        settings = await self._users.team_settings(team_id)
        manager = await self._team_manager(team_id, uid) if settings.handover.on_deactivate == "pool" else None
        if manager is None:
            raise Conflict("user.has_open_work", params=work, details=[
                detail(kind, "open_work", text="handover_open_work", value=str(n), count=n) for kind, n in work.items()
            ])
        if await self._col.find_one({"running_for": uid}, {"_id": 1}) is not None:
            raise Conflict("handover.in_progress", details=[detail("user_id", "running", text="handover_running")])
        doc = await self._users.update_user(actor, user_id, data, version)  # deactivated at once: no more sign-ins
        await self._begin(actor, user, to_user_id=manager, rule=None, include=list(self.kinds()), deactivate=False,
                          reason=None, pool=True, background=True)
        return doc

    async def _team_manager(self, team_id: str | None, leaving: str) -> str | None:
        """The team's manager who takes over a leaver's accounts: the longest-serving active one."""
        if not team_id:
            return None
        managers = await self._users_col.find({"team_id": team_id, "role": "manager", "active": True}, {"_id": 1}).to_list(None)
        ids = sorted(m["_id"] for m in managers if str(m["_id"]) != leaving)
        return str(ids[0]) if ids else None


class _Taken(Exception):
    """Another worker holds the hand-over now (this one was taken for dead)."""


_KIND_NAMES = {"leads": "线索", "contracts": "合同", "tasks": "待办", "tickets": "工单"}
