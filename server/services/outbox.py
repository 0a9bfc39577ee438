"""Delivery of the notification outbox as WeChat subscribe messages (the ``deliver_outbox`` job).

The ``notifications`` collection is both the in-app inbox and the outbox (``NotificationService``
writes it; this service only moves ``delivery`` on). A notification's ``delivery`` sub-document
(always written whole — it holds datetimes) goes through these states::

    pending ──claim──▶ sending ──▶ sent
       ▲                  │  ├──▶ failed        (43101 refused, 40003/40037/41030/47003, other errcodes, or gave up)
       └── retry/quiet ───┘  └──▶ in_app_only   (no openid, no template for the kind, no subscription left)

Exactly once across instances: a worker first *claims* a notification with a conditional update
(``pending`` and due → ``sending`` with its own claim token and a ``claim_until``), and only the
winner calls WeChat; every later write is conditional on that claim token. A worker killed between
its claim and its final write leaves the message ``sending``; once ``claim_until`` has passed
another worker takes it over. At that point delivery is at-least-once: the dead worker may or may
not have reached WeChat, and there is no way to ask WeChat, so the message may arrive twice. We
accept that rare duplicate rather than lose reminders (keep ``MPCRM_OUTBOX_CLAIM_S`` well above
``MPCRM_WECHAT_TIMEOUT_S`` so a slow live worker is never overtaken).

Budgets: each user accepts one-time subscriptions per template in the mini-program, which reports
them (``POST /me/subscriptions``); each send atomically takes one (``remaining > 0``, ``$inc -1``)
and gives it back if WeChat did not deliver (except 43101: WeChat says there is none; we zero it).

Values are shaped to WeChat's rules for their keyword's type before sending (``shape_value``), so a
well-configured template never gets 47003; a 47003, 40037 (unknown template), 41030 (page not in
the mini-program) or 40003 (bad openid) is a permanent failure, logged with the errcode. Busy (-1),
rate limits (45009/45011), HTTP trouble and timeouts are retried with back-off.
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import datetime, time, timedelta
from typing import Any
from collections.abc import Awaitable, Callable

from pymongo import ReturnDocument

from config.settings import Settings
from config.wechat_templates import keyword_type, load_templates
from server.actor import Actor
from server.clock import Clock, as_utc
from server.ids import maybe_oid
from server.schemas.team_settings import TeamSettingsBook
from server.services.notifications import NotificationService
from server.services.wechat import WechatCallError, WechatClient

log = logging.getLogger("mpcrm.outbox")

# The built-in templates are the mini-program's own catalogue (miniprogram_stub/miniprogram/templates.js:
# the ids config.js asks users to accept, and the ones the fake WeChat knows); MPCRM_WECHAT_TEMPLATES
# is merged over them. Put your own template ids there for production.
DEFAULT_TEMPLATES: dict[str, dict[str, Any]] = load_templates()

# WeChat's limits on subscribe-message values by keyword type (thing1 → thing): lengths in characters.
VALUE_LIMITS = {"thing": 20, "name": 10, "phrase": 5, "character_string": 32, "number": 32, "letter": 32, "symbol": 5, "phone_number": 17, "car_number": 8, "amount": 11}
RETRY_ERRCODES = {None, -1, 45009, 45011}  # network, 5xx, timeouts, malformed answers, busy, quota
REFUSED = 43101  # the user refused (or has no subscription left on WeChat's side)
FAILURE_REASONS: dict[int | None, str] = {REFUSED: "refused", 40003: "bad_openid", 40037: "unknown_template", 41030: "bad_page", 47003: "bad_data"}
# A value that would be empty (WeChat refuses empty values) is sent as this, by keyword type.
EMPTY_VALUE = {"phrase": "无", "number": "0", "amount": "0", "letter": "NA"}
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"


def value_type(key: str) -> str:
    return keyword_type(key)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shape_value(key: str, value: Any, tz) -> str:
    """A value shaped for a WeChat keyword: times formatted in business time, text cut (or filtered)
    to the rules of the keyword's type. May return "" when nothing usable is left."""
    kind = value_type(key)
    if kind in ("time", "date"):
        if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            y, m, d = (int(x) for x in value.split("-"))
            return f"{y}年{m}月{d}日"  # a calendar day: no time zone to apply
        moment = value if isinstance(value, datetime) else _parse_time(value)
        if moment is None:
            return ""
        local = as_utc(moment).astimezone(tz)
        day = f"{local.year}年{local.month}月{local.day}日"
        return day if kind == "date" else f"{day} {local:%H:%M}"
    text = " ".join(str(value if value is not None else "").split())
    limit = VALUE_LIMITS.get(kind, 20)
    if kind == "phrase":
        return "".join(re.findall(f"[{_HAN}]", text))[:limit]  # only Chinese characters
    if kind == "name":
        if re.search(f"[{_HAN}]", text):
            return _cut(text, limit)
        return _cut(re.sub(r"[^A-Za-z\s.\-·'_]", "", text).strip(), 20)
    if kind == "number":
        match = re.search(r"\d+(\.\d+)?", text)
        return match.group(0)[:limit].rstrip(".") if match else ""
    if kind == "letter":
        return re.sub(r"[^A-Za-z]", "", text)[:limit]
    if kind == "character_string":
        return re.sub(r"[^\x21-\x7e]", "", text)[:limit]
    if kind == "amount":
        match = re.search(r"[¥￥$€£]?\d{1,10}(\.\d{1,2})?元?", text.replace(",", ""))
        return match.group(0) if match else ""
    if kind == "phone_number":
        return re.sub(r"[^\d+\-()\s]", "", text).strip()[:limit]
    if kind == "symbol":
        return re.sub(f"[0-9A-Za-z{_HAN}\\s]", "", text)[:limit]
    if kind == "car_number":
        return text.replace(" ", "")[:limit]
    return _cut(text, limit)


def cut_value(key: str, value: Any, tz, fallback: Any = None) -> str:
    """``shape_value``, never empty: time/date keys fall back to ``fallback`` (the notification's
    time), other keys to a placeholder WeChat accepts for their type."""
    shaped = shape_value(key, value, tz)
    if not shaped and fallback is not None and value_type(key) in ("time", "date"):
        shaped = shape_value(key, fallback, tz)
    return shaped or EMPTY_VALUE.get(value_type(key), "-")


def _parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def subscription_id(user_id: str, template_id: str) -> str:
    return f"{user_id}:{template_id}"


def templates_for(settings: Settings) -> dict[str, dict[str, Any]]:
    """The subscribe-message templates by kind. The built-in catalogue's ids are the fake WeChat's
    (``DEMO_…``) and real WeChat refuses them, so production sends only the templates it was given;
    every other kind stays in-app only."""
    builtin = {} if settings.env == "production" else DEFAULT_TEMPLATES
    return {**builtin, **settings.wechat_templates}


class OutboxService:
    def __init__(
        self, *, subscriptions, notifications_view, users_view, notifications: NotificationService, clock: Clock, settings: Settings, wechat: WechatClient,
        settings_book: Callable[[], Awaitable[TeamSettingsBook]],
    ) -> None:
        self._settings_book = settings_book  # UserService.settings_book: each recipient's team's quiet hours, once per run
        self._col = notifications_view  # read-only: what is due; claims and outcomes are NotificationService's writes
        self._notifications = notifications
        self._users = users_view
        self._subs = subscriptions
        self._clock = clock
        self._settings = settings
        self._wechat = wechat
        self.templates = templates_for(settings)
        self.worker = f"outbox-{uuid.uuid4().hex[:8]}"

    # ------------------------------------------------------------ subscriptions (POST /me/subscriptions)
    async def record_subscription(self, actor: Actor, template_id: str, accepted: bool) -> dict:
        key = subscription_id(actor.id, template_id)
        if accepted:
            doc = await self._subs.find_one_and_update(
                {"_id": key},
                {"$inc": {"remaining": 1}, "$set": {"user_id": actor.id, "template_id": template_id}, "$currentDate": {"updated_at": True}},
                upsert=True, return_document=ReturnDocument.AFTER,
            )
        else:
            doc = await self._subs.find_one({"_id": key})
        return {"template_id": template_id, "remaining": int((doc or {}).get("remaining", 0))}

    # ------------------------------------------------------------ quiet hours
    def quiet_until(self, now: datetime, window: str) -> datetime | None:
        """The end of the quiet ``window`` (``HH:MM-HH:MM`` in business time, the recipient's team's
        ``reminders.quiet_hours``) that ``now`` falls in (UTC), or None outside it (or no window)."""
        if not window:
            return None
        start_s, end_s = window.split("-")
        start, end = time.fromisoformat(start_s), time.fromisoformat(end_s)
        local = as_utc(now).astimezone(self._settings.tz)
        t = local.time().replace(tzinfo=None)
        quiet = (start <= t or t < end) if start > end else (start <= t < end)
        if not quiet:
            return None
        morning = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
        if morning <= local:
            morning += timedelta(days=1)
        return morning.astimezone(as_utc(now).tzinfo)

    # ------------------------------------------------------------ the job
    async def deliver_due(self, now: datetime, limit: int | None = None) -> dict:
        """Send what is due: pending with ``next_attempt_at <= now``, or ``sending`` with an expired
        claim (its worker died). Safe to run on several instances at once."""
        limit = limit or self._settings.outbox_batch
        candidates = await self._col.find(
            {"$or": [
                {"delivery.state": "pending", "delivery.next_attempt_at": {"$lte": now}},
                {"delivery.state": "sending", "delivery.claim_until": {"$lte": now}},
            ]},
            {"user_id": 1, "kind": 1, "title": 1, "body": 1, "data": 1, "urgent": 1, "created_at": 1, "delivery": 1, "dedupe_key": 1},
        ).limit(limit).to_list(None)
        counts = {"candidates": len(candidates), "sent": 0, "retry": 0, "failed": 0, "in_app_only": 0, "deferred": 0, "lost_claim": 0, "rerouted": 0}
        if not candidates:
            return counts
        oids = [oid for oid in {maybe_oid(n["user_id"]) for n in candidates} if oid is not None]
        users = {str(u["_id"]): u for u in await self._users.find({"_id": {"$in": oids}}, {"openid": 1, "active": 1, "role": 1, "team_id": 1}).to_list(None)} if oids else {}
        book = await self._settings_book()
        for item in candidates:
            user = users.get(item["user_id"])
            try:
                outcome = await self._deliver_one(item, user, now, book.of((user or {}).get("team_id")).reminders.quiet_hours)
            except Exception:  # one bad message must not stop the batch; its claim expires and it is retried
                log.exception("outbox delivery failed", extra={"notification_id": str(item["_id"])})
                outcome = "retry"
            counts[outcome] = counts.get(outcome, 0) + 1
        return counts

    async def _claim(self, item: dict, now: datetime) -> tuple[str, dict] | None:
        d = item["delivery"]
        if d["state"] == "pending":
            filter_ = {"_id": item["_id"], "delivery.state": "pending", "delivery.next_attempt_at": {"$lte": now}, "delivery.attempts": d.get("attempts", 0)}
        else:
            filter_ = {"_id": item["_id"], "delivery.state": "sending", "delivery.claim": d.get("claim"), "delivery.claim_until": {"$lte": now}}
        token = uuid.uuid4().hex
        claimed = {**d, "state": "sending", "claim": token, "claim_owner": self.worker, "claim_until": now + timedelta(seconds=self._settings.outbox_claim_s)}
        return (token, claimed) if await self._notifications.claim_delivery(filter_, claimed) else None

    async def _finish(self, item_id, token: str, delivery: dict) -> None:
        final = {k: v for k, v in delivery.items() if k not in ("claim", "claim_owner", "claim_until")}
        await self._notifications.finish_delivery(item_id, token, final)

    async def _deliver_one(self, item: dict, user: dict | None, now: datetime, quiet_hours: str) -> str:
        claim = await self._claim(item, now)
        if claim is None:
            return "lost_claim"  # another worker has it
        token, d = claim
        if user is not None and self._notifications.needs_new_recipient(user):
            # Addressed to someone who left: it goes to whoever now answers for it, never to them.
            to = await self._notifications.reroute(item, user, now)
            await self._finish(item["_id"], token, {**d, "state": "rerouted", "to": to})
            return "rerouted"
        template = self.templates.get(item["kind"])
        if template is None or not template.get("template_id"):
            await self._finish(item["_id"], token, {**d, "state": "in_app_only", "reason": "no_template"})
            return "in_app_only"
        if user is None or not user.get("openid") or not user.get("active", True):
            await self._finish(item["_id"], token, {**d, "state": "in_app_only", "reason": "no_openid"})
            return "in_app_only"
        morning = None if item.get("urgent") else self.quiet_until(now, quiet_hours)
        if morning is not None:
            await self._finish(item["_id"], token, {**d, "state": "pending", "next_attempt_at": morning, "deferred": "quiet_hours"})
            return "deferred"
        sub_id = subscription_id(item["user_id"], template["template_id"])
        taken = await self._subs.find_one_and_update({"_id": sub_id, "remaining": {"$gt": 0}}, {"$inc": {"remaining": -1}})
        if taken is None:
            await self._finish(item["_id"], token, {**d, "state": "in_app_only", "reason": "no_subscription"})
            return "in_app_only"
        attempts = d.get("attempts", 0) + 1
        try:
            answer = await self._wechat.send_subscribe_message(self.message(item, user["openid"], template))
        except WechatCallError as exc:
            if exc.errcode == REFUSED:  # WeChat has no acceptance left for this template: neither do we
                await self._subs.update_one({"_id": sub_id}, {"$set": {"remaining": 0}})
            else:
                await self._subs.update_one({"_id": sub_id}, {"$inc": {"remaining": 1}})  # WeChat did not use it
            if exc.errcode in RETRY_ERRCODES and attempts < self._settings.outbox_max_attempts:
                delay = timedelta(seconds=self._settings.outbox_retry_base_s * 2 ** (attempts - 1))
                await self._finish(item["_id"], token, {**d, "state": "pending", "attempts": attempts, "errcode": exc.errcode, "next_attempt_at": now + delay})
                return "retry"
            reason = "gave_up" if exc.errcode in RETRY_ERRCODES else FAILURE_REASONS.get(exc.errcode, "rejected")
            log.warning("wechat did not deliver the message", extra={
                "notification_id": str(item["_id"]), "kind": item["kind"], "template_id": template["template_id"],
                "errcode": exc.errcode, "reason": reason, "attempts": attempts})
            await self._finish(item["_id"], token, {**d, "state": "failed", "attempts": attempts, "errcode": exc.errcode, "reason": reason,
                                                    "template_id": template["template_id"], "failed_at": now})
            return "failed"
        await self._finish(item["_id"], token, {**d, "state": "sent", "attempts": attempts, "msgid": answer.get("msgid"), "template_id": template["template_id"], "sent_at": now})
        return "sent"

    def message(self, item: dict, openid: str, template: dict) -> dict:
        data = item.get("data") or {}
        sources = {"title": item.get("title"), "body": item.get("body"), "created_at": item.get("created_at"), **data}
        values = {key: {"value": cut_value(key, sources.get(source), self._settings.tz, item.get("created_at"))}
                  for source, key in (template.get("fields") or {}).items()}
        target = data.get("survey_id") or data.get("ticket_id") or data.get("task_id") or data.get("lead_id") or data.get("contract_id")
        page = template.get("page")
        if page and target:
            page = f"{page}?id={target}"
        body: dict[str, Any] = {"touser": openid, "template_id": template["template_id"], "data": values,
                                "miniprogram_state": self._settings.wechat_miniprogram_state, "lang": "zh_CN"}
        if page:
            body["page"] = page
        return body
