"""The contract jobs: renewal reminders, contracts that end (a customer with no renewal becomes
``at_risk``), and payment reminders. Each is safe to run twice or on two instances: reminders carry
dedupe keys, the lead move is version- and stage-guarded, the contract update conditional."""

from __future__ import annotations

from datetime import datetime, timedelta
from collections.abc import Awaitable, Callable

from pymongo import ReturnDocument

from config.settings import Settings
from server.actor import SYSTEM
from server.clock import Clock
from server.schemas.team_settings import TeamSettingsBook
from server.services.contracts.common import ContractBase, business_today, parse_date
from server.services.contracts.money_events import ended_event
from server.services.leads import LeadService
from server.services.lifecycle import TRANSITIONS
from server.services.notifications import NotificationService, notification


class ContractJobs(ContractBase):
    def __init__(self, *, contracts, users_view, leads_view, clock: Clock, settings: Settings, leads: LeadService,
                 notifications: NotificationService, settings_book: Callable[[], Awaitable[TeamSettingsBook]]) -> None:
        super().__init__(contracts, clock, settings)
        self._settings_book = settings_book  # UserService.settings_book: every team's reminder days, once per run
        self._users = users_view
        self._leads_col = leads_view
        self._leads = leads
        self._notifications = notifications

    async def renewal_reminders(self, now: datetime) -> dict:
        """Reminders at the days before ``end_date`` the contract's team set (``reminders.renewal_days``)
        to the owner, and to the team's managers from ``reminders.renewal_manager_days``; one per
        contract, offset and person, ever (dedupe keys). A run that was missed sends the reminder
        due most recently, late, once. Every team's settings are read once per run."""
        book = await self._settings_book()
        widest = max((max(t.reminders.renewal_days) for t in book.all() if t.reminders.renewal_days), default=None)
        if widest is None:
            return {"notified": 0}
        today = business_today(now, self._settings)
        contracts = await self._col.find(
            {"status": "active", "end_date": {"$gte": today.isoformat(), "$lte": (today + timedelta(days=widest)).isoformat()}},
            {"title": 1, "lead_name": 1, "owner_id": 1, "team_id": 1, "end_date": 1, "renewal_active": 1},
        ).to_list(None)
        due: list[tuple[dict, int, int, bool]] = []  # (contract, days left, offset, the managers are told too)
        for c in contracts:
            if c.get("renewal_active"):
                continue
            rules = book.of(c.get("team_id")).reminders
            left = (parse_date(c["end_date"]) - today).days
            offset = min((o for o in rules.renewal_days if o >= left), default=None)
            if offset is not None:
                due.append((c, left, offset, left <= rules.renewal_manager_days))
        teams = sorted({c["team_id"] for c, _, _, managers_too in due if managers_too and c.get("team_id")})
        managers: dict[str | None, list[str]] = {}  # by team id as stored
        if teams:
            for u in await self._users.find({"team_id": {"$in": teams}, "role": "manager", "active": True}, {"team_id": 1}).to_list(None):
                managers.setdefault(u["team_id"], []).append(str(u["_id"]))
        notes = []
        for c, left, offset, managers_too in due:
            people = [c["owner_id"]] if c.get("owner_id") else []
            if managers_too:
                people += [m for m in managers.get(c.get("team_id"), []) if m not in people]
            for user_id in people:
                notes.append(notification(
                    user_id, "renewal_due", "合同即将到期",
                    f"《{c['title']}》（{c.get('lead_name', '')}）将于 {c['end_date']} 到期，还有 {left} 天，请跟进续约",
                    f"renewal:{c['_id']}:{offset}:{user_id}", data={"contract_id": c["_id"], "days_left": left, "offset": offset},
                    urgent=managers_too,
                ))
        created = await self._notifications.notify(notes, now)
        return {"contracts": len(due), "notified": created}

    async def end_contracts(self, now: datetime) -> dict:
        """Active contracts past their end date become ``ended``; a customer with no renewal (and no
        other active contract) moves to ``at_risk``. Safe to run twice or on two instances: the lead
        move is version- and stage-guarded, the contract update conditional."""
        today = business_today(now, self._settings).isoformat()
        ended = await self._col.find({"status": "active", "end_date": {"$lt": today}}, {"lead_id": 1, "title": 1, "renewal_active": 1, "end_date": 1}).to_list(None)
        moved = 0
        if ended:
            lead_ids = sorted({c["lead_id"] for c in ended})
            still = {c["lead_id"] for c in await self._col.find({"lead_id": {"$in": lead_ids}, "status": "active", "end_date": {"$gte": today}}, {"lead_id": 1}).to_list(None)}
            leads = {d["_id"]: d for d in await self._leads_col.find({"_id": {"$in": lead_ids}}).to_list(None)}
            moves: dict[str, tuple[dict, str, dict[str, str]]] = {}
            for c in ended:
                lead = leads.get(c["lead_id"])
                if c.get("renewal_active") or c["lead_id"] in still or lead is None or c["lead_id"] in moves:
                    continue
                if "at_risk" not in TRANSITIONS.get(lead["stage"], ()):
                    continue
                moves[c["lead_id"]] = (lead, "at_risk", {
                    "zh-CN": f"合同《{c['title']}》已于 {c['end_date']} 到期且未续约",
                    "en": f"contract {c['title']} ended on {c['end_date']} with no renewal",
                })
            # One batch: a lead another instance moved first comes back as an error and is skipped.
            results = await self._leads.move_stages(list(moves.values()), SYSTEM, now=now) if moves else []
            moved = sum(1 for r in results if isinstance(r, dict))
            for c in ended:
                done = await self._col.find_one_and_update(
                    {"_id": c["_id"], "status": "active"}, {"$set": {"status": "ended"}, "$inc": {"version": 1}, "$currentDate": {"updated_at": True}},
                    projection={"lead_id": 1, "team_id": 1, "owner_id": 1, "end_date": 1, "renewal_active": 1}, return_document=ReturnDocument.AFTER,
                )
                if done is not None:  # this run ended it (not another instance): the timeline says so, once
                    await self._leads.add_events_once([ended_event(done, bool(done.get("renewal_active")), SYSTEM, now, self._settings.tz)])
        return {"ended": len(ended), "at_risk": moved}

    async def payment_reminders(self, now: datetime) -> dict:
        """The owner hears of each open instalment N days before it is due and on the overdue days
        of the contract's team (``reminders.payment_days_before`` / ``payment_overdue_days``; once
        each, ever: dedupe keys). A missed run sends the most recent one, late."""
        today = business_today(now, self._settings)
        book = await self._settings_book()
        horizon = (today + timedelta(days=max(t.reminders.payment_days_before for t in book.all()))).isoformat()
        contracts = await self._col.find(
            {"status": {"$in": ["active", "ended"]}, "paid": False, "next_due": {"$lte": horizon}},
            {"title": 1, "lead_name": 1, "owner_id": 1, "team_id": 1, "payment_plan": 1},
        ).to_list(None)
        notes = []
        for c in contracts:
            if not c.get("owner_id"):
                continue
            rules = book.of(c.get("team_id")).reminders
            before, overdue_days = rules.payment_days_before, sorted(set(rules.payment_overdue_days))
            for inst in c["payment_plan"]:
                open_fen = inst["amount_fen"] - inst.get("paid_fen", 0)
                if open_fen <= 0:
                    continue
                days = (parse_date(inst["due_date"]) - today).days
                if 0 <= days <= before:
                    key, title = f"before{before}", "回款即将到期"
                    body = f"《{c['title']}》第 {inst['no']} 期 ¥{open_fen / 100:,.2f} 将于 {inst['due_date']} 到期"
                elif days < 0 and overdue_days and -days >= overdue_days[0]:
                    k = max(o for o in overdue_days if o <= -days)
                    key, title = f"overdue{k}", "回款已逾期"
                    body = f"《{c['title']}》第 {inst['no']} 期 ¥{open_fen / 100:,.2f} 已逾期 {-days} 天（应于 {inst['due_date']} 回款）"
                else:
                    continue
                notes.append(notification(
                    c["owner_id"], "payment_due", title, body, f"payment:{c['_id']}:{inst['no']}:{key}",
                    data={"contract_id": c["_id"], "instalment": inst["no"], "due_date": inst["due_date"], "outstanding_fen": open_fen},
                    urgent=days < 0,
                ))
        created = await self._notifications.notify(notes, now)
        return {"contracts": len(contracts), "notified": created}

