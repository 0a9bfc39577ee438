from __future__ import annotations

from typing import Any

from server.schemas.common import IsoDatetime, OutModel, PageQuery


class NotificationQuery(PageQuery):
    unread: bool | None = None


class DeliveryOut(OutModel):
    state: str
    attempts: int = 0


class NotificationOut(OutModel):
    id: str
    kind: str
    title: str
    body: str
    data: dict[str, Any] = {}
    urgent: bool = False
    created_at: IsoDatetime
    read_at: IsoDatetime | None = None
    delivery: DeliveryOut


class NotificationPage(OutModel):
    items: list[NotificationOut]
    next_cursor: str | None = None
