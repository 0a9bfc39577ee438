"""Churn signals (流失信号): something a customer did that says they may leave.

A complaint ticket, a reopened ticket, a low satisfaction score (CSAT ≤ 2) or a low NPS (≤ 6) moves
a customer-stage lead (``customer``, ``retained``, ``won_back``) to ``at_risk`` through the lead's
one stage machine (``LeadService.move_stage``: a ``stage_changed`` event whose reason names the
signal) and gives its owner a task. **Once**: a lead already at risk gets nothing new from a second
signal (no second move, no second task); two signals racing for the same lead move it once (the
move is guarded by the lead's version and stage) and only the winner gives the task, whose id is
derived from the move so even a retry cannot give a second one.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from server.actor import SYSTEM
from server.clock import Clock
from server.errors import ApiError
from server.services.leads import LeadService
from server.services.tasks import TaskService

log = logging.getLogger("mpcrm.churn")

SIGNALS: dict[str, dict[str, str]] = {
    "complaint": {"zh-CN": "客户投诉", "en": "a complaint"},
    "reopened": {"zh-CN": "工单被客户重新打开", "en": "a ticket reopened by the customer"},
    "low_csat": {"zh-CN": "满意度评分低", "en": "a low satisfaction score"},
    "low_nps": {"zh-CN": "NPS 评分低", "en": "a low NPS score"},
}
SIGNAL_STAGES = ("customer", "retained", "won_back")  # the stages a signal moves to at_risk
TASK_DUE = timedelta(days=1)


def _plain(data: dict) -> dict[str, Any]:
    """What of the caller's data is kept on the lead: ids and scores, not free text."""
    return {k: v for k, v in (data or {}).items() if isinstance(k, str) and isinstance(v, (str, int, float, bool)) and len(str(v)) <= 64}


class ChurnSignals:
    def __init__(self, *, leads_view, leads: LeadService, tasks: TaskService, clock: Clock) -> None:
        self._leads_col = leads_view  # read-only: the lead as it is now; the move is LeadService's
        self._leads = leads
        self._tasks = tasks
        self._clock = clock

    async def flag(self, lead_id: str, signal: str, data: dict, now: datetime | None = None) -> bool:
        """Move the lead to ``at_risk`` for ``signal`` and give its owner a task; True if this
        call moved it. A lead that is not a customer, or is already at risk, is left as it is."""
        if signal not in SIGNALS:
            raise ValueError(f"unknown churn signal {signal!r} (one of {', '.join(SIGNALS)})")
        now = now or self._clock.now()
        lead = await self._leads_col.find_one({"_id": lead_id})
        if lead is None or lead.get("stage") not in SIGNAL_STAGES:
            return False
        label = SIGNALS[signal]
        reason = {"zh-CN": f"流失信号：{label['zh-CN']}", "en": f"churn signal: {label['en']}"}
        marker = {"signal": signal, "at": now, **_plain(data)}
        try:
            moved = await self._leads.move_stage(lead, "at_risk", SYSTEM, reason=reason, extra={"at_risk_signal": marker})
        except ApiError:
            return False  # changed meanwhile: another signal (or a person) moved it first
        owner = moved.get("owner_id")
        if owner:
            await self._tasks.create_system_task(
                f"churn:{lead_id}:{int(now.timestamp() * 1000)}", kind="churn_signal",
                title=f"流失预警跟进：{lead.get('name') or ''}（{label['zh-CN']}）", lead=moved, assignee_id=owner,
                due_at=now + TASK_DUE, now=now, data={"signal": signal, **_plain(data)},
            )
        log.info("churn signal moved a lead to at_risk", extra={"lead_id": lead_id, "signal": signal})
        return True
