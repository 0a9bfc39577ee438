"""The audit log: who did what to which record, including refused attempts."""

from __future__ import annotations

from typing import Any

from server.actor import Actor
from server.clock import Clock


class AuditService:
    def __init__(self, audit_log, clock: Clock) -> None:
        self._col = audit_log
        self._clock = clock

    async def record(
        self,
        actor: Actor,
        action: str,
        *,
        target_type: str,
        target_id: str,
        outcome: str = "ok",
        details: dict[str, Any] | None = None,
    ) -> None:
        await self._col.insert_one(
            {
                "at": self._clock.now(),
                "actor_id": actor.id,
                "actor_role": actor.role,
                "action": action,
                "target_type": target_type,
                "target_id": target_id,
                "outcome": outcome,
                "details": details or {},
            }
        )
