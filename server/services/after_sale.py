"""After-sale jobs (售后): return-visit tasks (回访) and surveys after a contract starts.

Both are daily and read only active contracts in a bounded window through the ``(status,
start_date)`` and ``(status, end_date)`` indexes; each team's rules come from its settings
(``service`` group, server/schemas/team_settings.py):

- ``return_visits``: a task for the lead's owner ``return_visit_after_days`` after a contract starts
  (rung ``after_start``) and ``return_visit_before_renewal_days`` before it ends (rung
  ``before_renewal``, skipped once the contract has a renewal); 0 turns a rung off. The task's
  ``_id`` is ``return_visit:<contract>:<rung>``: created once per contract and rung, ever, however
  often the job runs or on how many instances. A run that was missed creates the task late, within
  ``GRACE_DAYS`` of its day; a contract that started longer ago than that gets no after-start task.
- ``contract_surveys``: with ``survey_after_contract`` on, a survey
  ``survey_after_contract_days`` after the start (``SurveyService.offer``, one per contract).

Recording the visit is a follow-up of kind ``return_visit`` (server/services/followups.py), which
completes the task.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from server.clock import Clock
from server.services.surveys import SurveyService
from server.services.tasks import TaskService
from server.services.users import UserService

GRACE_DAYS = 30
MAX_DAYS = 365  # the settings' upper bound on every offset
DUE_AT = time(18, 0)  # a return visit is due by the end of its business day


def return_visit_task_id(contract_id: str, rung: str) -> str:
    return f"return_visit:{contract_id}:{rung}"


class AfterSaleJobs:
    def __init__(self, *, contracts_view, leads_view, clock: Clock, tz: ZoneInfo, users: UserService, tasks: TaskService, surveys: SurveyService) -> None:
        self._contracts = contracts_view  # read-only: ContractService owns contracts
        self._leads = leads_view
        self._clock = clock
        self.tz = tz
        self._users = users
        self._tasks = tasks
        self._surveys = surveys

    def _today(self, now: datetime) -> date:
        return now.astimezone(self.tz).date()

    def _due_at(self, day: date) -> datetime:
        return datetime.combine(day, DUE_AT, tzinfo=self.tz).astimezone(ZoneInfo("UTC"))

    async def _started(self, today: date) -> list[dict]:
        """Active contracts that started within the longest offset plus the grace period."""
        return await self._contracts.find(
            {"status": "active", "start_date": {"$gte": (today - timedelta(days=MAX_DAYS + GRACE_DAYS)).isoformat(), "$lte": today.isoformat()}},
            {"lead_id": 1, "owner_id": 1, "team_id": 1, "title": 1, "lead_name": 1, "start_date": 1, "end_date": 1, "renewal_active": 1},
        ).to_list(None)

    async def return_visits(self, now: datetime) -> dict:
        today = self._today(now)
        started = await self._started(today)
        ending = await self._contracts.find(
            {"status": "active", "end_date": {"$gte": today.isoformat(), "$lte": (today + timedelta(days=MAX_DAYS)).isoformat()}},
            {"lead_id": 1, "owner_id": 1, "team_id": 1, "title": 1, "lead_name": 1, "start_date": 1, "end_date": 1, "renewal_active": 1},
        ).to_list(None)
        due: list[tuple[dict, str, date]] = []
        for c in started:
            rules = (await self._users.team_settings(c.get("team_id"))).service
            if rules.return_visit_after_days:
                day = date.fromisoformat(c["start_date"]) + timedelta(days=rules.return_visit_after_days)
                if day <= today <= day + timedelta(days=GRACE_DAYS):
                    due.append((c, "after_start", day))
        for c in ending:
            rules = (await self._users.team_settings(c.get("team_id"))).service
            if rules.return_visit_before_renewal_days and not c.get("renewal_active"):
                day = date.fromisoformat(c["end_date"]) - timedelta(days=rules.return_visit_before_renewal_days)
                if day <= today:
                    due.append((c, "before_renewal", max(day, today)))
        if not due:
            return {"due": 0, "created": 0}
        lead_ids = sorted({c["lead_id"] for c, _, _ in due})
        leads = {d["_id"]: d for d in await self._leads.find({"_id": {"$in": lead_ids}}, {"owner_id": 1, "team_id": 1, "name": 1}).to_list(None)}
        docs = []
        for c, rung, day in due:
            lead = leads.get(c["lead_id"]) or {}
            owner = lead.get("owner_id") or c.get("owner_id")
            if not owner:
                continue
            label = "合同生效回访" if rung == "after_start" else "续约前回访"
            docs.append({
                "_id": return_visit_task_id(c["_id"], rung), "kind": "return_visit", "rung": rung,
                "title": f"{label}：{lead.get('name') or c.get('lead_name') or ''}".rstrip("："),
                "lead_id": c["lead_id"], "contract_id": c["_id"], "assignee_id": owner,
                "team_id": lead.get("team_id") or c.get("team_id"), "due_at": self._due_at(day),
            })
        created = await self._tasks.ensure_tasks(docs, now)
        return {"due": len(docs), "created": created}

    async def contract_surveys(self, now: datetime) -> dict:
        today = self._today(now)
        due = []
        for c in await self._started(today):
            rules = (await self._users.team_settings(c.get("team_id"))).service
            if not rules.survey_after_contract:
                continue
            day = date.fromisoformat(c["start_date"]) + timedelta(days=rules.survey_after_contract_days)
            if day <= today <= day + timedelta(days=GRACE_DAYS):
                due.append(c)
        done = await self._surveys.offered_for("contract", [c["_id"] for c in due])
        offered = 0
        for c in due:
            if c["_id"] in done:
                continue
            survey = await self._surveys.offer(lead_id=c["lead_id"], customer_id=None, team_id=c.get("team_id"), source="contract", source_id=c["_id"], now=now)
            offered += survey is not None
        return {"due": len(due), "offered": offered}
