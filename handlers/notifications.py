"""The caller's notification inbox."""

from __future__ import annotations

from handlers.base import ALL_ROLES, ApiHandler, operation
from server.schemas.notifications import NotificationOut, NotificationPage, NotificationQuery
from server.schemas.tasks import SubscriptionIn, SubscriptionOut
from server.services.users import public_id


class NotificationListHandler(ApiHandler):
    @operation("Your notifications, newest first (?unread=true)", roles=ALL_ROLES, query=NotificationQuery, response=NotificationPage, tags=("notifications",))
    async def get(self) -> None:
        query = self.parse_query(NotificationQuery)
        page = await self.ctx.notifications.list(self.actor, query.unread, query.limit, query.cursor)
        self.write_page(NotificationPage, page, public_id)


class NotificationReadHandler(ApiHandler):
    @operation("Mark a notification read", roles=ALL_ROLES, response=NotificationOut, tags=("notifications",))
    async def post(self, notification_id: str) -> None:
        self.write_model(NotificationOut, public_id(await self.ctx.notifications.mark_read(self.actor, notification_id)))


class SubscriptionHandler(ApiHandler):
    @operation(
        "Report a one-time WeChat subscription the user accepted (one more message of that template may be sent)",
        roles=ALL_ROLES, body=SubscriptionIn, response=SubscriptionOut, tags=("notifications",),
    )
    async def post(self) -> None:
        body = self.parse_body(SubscriptionIn)
        self.write_model(SubscriptionOut, await self.ctx.outbox.record_subscription(self.actor, body.template_id, body.accepted))


routes = [
    (r"/api/v1/me/subscriptions", SubscriptionHandler),
    (r"/api/v1/notifications", NotificationListHandler),
    (r"/api/v1/notifications/(?P<notification_id>[^/]+)/read", NotificationReadHandler),
]
