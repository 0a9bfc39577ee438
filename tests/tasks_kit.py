"""Helpers for the task, reminder and outbox tests (tests/handlers/test_tasks.py,
tests/jobs/test_reminders.py, tests/jobs/test_outbox.py)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from conftest import TEST_ADMIN, Person
from leads_kit import LEADS, make_lead

TASKS = "/api/v1/tasks"
NOTIFICATIONS = "/api/v1/notifications"
SUBSCRIPTIONS = "/api/v1/me/subscriptions"
SHANGHAI = timezone(timedelta(hours=8))


def iso(moment: datetime) -> str:
    return moment.isoformat()


def soon(**delta: float) -> datetime:
    return (datetime.now(timezone.utc) + timedelta(**delta)).replace(microsecond=0)


async def bound(ctx, people, wechat_state, role: str = "rep", team: str = "华北销售部") -> Person:
    """A staff member who bound their WeChat (so they have an openid), through the real flow."""
    person = await people.make(role, team=team)
    bind = await ctx.users.make_bind_code(TEST_ADMIN, person.id)
    openid = f"o{uuid.uuid4().hex[:20]}"
    login = wechat_state.issue_login_code(openid)["code"]
    pair = await ctx.auth.wechat_login(login, bind["code"])
    return Person(user={**person.user, "openid": openid}, token=pair["access_token"], refresh_token=pair["refresh_token"])


async def customer_lead(api, person, **fields) -> dict:
    """A lead walked through the lifecycle to stage ``customer``."""
    lead = await make_lead(api, person, **fields)
    for to in ("contacted", "qualified", "customer"):
        r = await api.post(f"{LEADS}/{lead['id']}/stage", json={"to": to}, token=person.token)
        assert r.status == 200, r.body
        lead = r.json
    return lead


async def create_task(api, person, **body) -> dict:
    body.setdefault("title", "回访客户")
    body.setdefault("due_at", iso(soon(days=1)))
    r = await api.post(TASKS, json=body, token=person.token)
    assert r.status == 201, r.body
    return r.json


async def inbox(api, person) -> list[dict]:
    r = await api.get(NOTIFICATIONS + "?limit=100", token=person.token)
    assert r.status == 200, r.body
    return r.json["items"]
