"""deliver_outbox: WeChat subscribe messages from the notification outbox, exactly once."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from jobs.registry import load_jobs, run_job
from miniprogram_stub.wechat_api import PATH_SUBSCRIBE_SEND, Fault
from server.context import build_context
from server.db import connect
from server.services.notifications import notification
from tasks_kit import SHANGHAI, SUBSCRIPTIONS, bound

load_jobs()

TEMPLATE = "tmpl-task-remind"
DAY = datetime(2030, 1, 7, 10, 0, tzinfo=SHANGHAI)  # a Monday, 10:00 business time


@pytest.fixture
def settings_overrides() -> dict:
    return {
        "wechat_templates": {"task_reminder": {"template_id": TEMPLATE, "page": "pages/tasks/detail", "fields": {"title": "thing1", "due_at": "time2", "body": "thing3"}}},
        "outbox_claim_s": 60,
    }


async def _subscribe(api, person, n: int = 1, template: str = TEMPLATE) -> int:
    for _ in range(n):
        r = await api.post(SUBSCRIPTIONS, json={"template_id": template, "accepted": True}, token=person.token)
        assert r.status == 200, r.body
    return r.json["remaining"]


async def _notify(ctx, person, key: str, at: datetime = DAY, *, title: str = "回访张三", urgent: bool = False, kind: str = "task_reminder") -> None:
    item = notification(person.id, kind, title, "明天上午十点前完成", key, data={"task_id": "t1", "due_at": (at + timedelta(hours=1)).isoformat()}, urgent=urgent)
    await ctx.notifications.notify([item], at)


def _delivery(raw_db, key: str) -> dict:
    return raw_db.notifications.find_one({"dedupe_key": key})["delivery"]


def _remaining(raw_db, person, template: str = TEMPLATE) -> int:
    doc = raw_db.subscriptions.find_one({"_id": f"{person.id}:{template}"})
    return doc["remaining"] if doc else 0


@pytest.mark.gen_test
async def test_a_message_is_sent_once_with_values_cut_to_wechat_limits(ctx, api, people, wechat, raw_db):
    state, _ = wechat
    rep = await bound(ctx, people, state)
    await _subscribe(api, rep, 2)
    await _notify(ctx, rep, "k1", title="这是一个非常非常长的待办标题，超过了微信二十个字的限制")
    for _ in range(2):  # the same moment twice: one message
        await run_job(ctx, "deliver_outbox", now=DAY + timedelta(seconds=5))
    assert len(state.messages) == 1
    [msg] = state.messages
    assert msg["touser"] == rep.user["openid"] and msg["template_id"] == TEMPLATE and msg["page"] == "pages/tasks/detail?id=t1"
    thing = msg["data"]["thing1"]["value"]
    assert len(thing) == 20 and thing.startswith("这是一个非常非常长的") and thing.endswith("…")
    assert msg["data"]["time2"]["value"] == "2030年1月7日 11:00"
    d = _delivery(raw_db, "k1")
    assert d["state"] == "sent" and d["attempts"] == 1 and d["msgid"] == msg["msgid"] and "claim" not in d
    assert _remaining(raw_db, rep) == 1
    r = await api.get("/api/v1/notifications", token=rep.token)
    assert r.json["items"][0]["delivery"]["state"] == "sent"


@pytest.mark.gen_test
async def test_in_app_only_without_openid_subscription_or_template(ctx, api, people, wechat, raw_db):
    state, _ = wechat
    rep = await bound(ctx, people, state)
    plain = await people.rep()  # never opened the mini-program: no openid
    await _subscribe(api, plain, 1)
    await _notify(ctx, rep, "no-sub")
    await _notify(ctx, plain, "no-openid")
    await _notify(ctx, rep, "no-template", kind="something_else")
    result = await run_job(ctx, "deliver_outbox", now=DAY)
    assert result["in_app_only"] == 3 and state.messages == []
    assert _delivery(raw_db, "no-sub")["reason"] == "no_subscription"
    assert _delivery(raw_db, "no-openid")["reason"] == "no_openid"
    assert _delivery(raw_db, "no-template")["reason"] == "no_template"
    assert all(_delivery(raw_db, k)["state"] == "in_app_only" for k in ("no-sub", "no-openid", "no-template"))


@pytest.mark.gen_test
async def test_quiet_hours_hold_non_urgent_messages_until_morning(ctx, api, people, wechat, raw_db):
    state, _ = wechat
    rep = await bound(ctx, people, state)
    await _subscribe(api, rep, 3)
    night = datetime(2030, 1, 7, 23, 30, tzinfo=SHANGHAI)
    await _notify(ctx, rep, "night", night)
    await _notify(ctx, rep, "urgent", night, urgent=True)
    await run_job(ctx, "deliver_outbox", now=night)
    assert [m["data"]["thing1"]["value"] for m in state.messages] == ["回访张三"]  # only the urgent one
    d = _delivery(raw_db, "night")
    assert d["state"] == "pending" and d["deferred"] == "quiet_hours"
    assert d["next_attempt_at"] == datetime(2030, 1, 8, 8, 0, tzinfo=SHANGHAI)
    assert _remaining(raw_db, rep) == 2  # a deferred message takes no subscription
    await run_job(ctx, "deliver_outbox", now=datetime(2030, 1, 8, 7, 59, tzinfo=SHANGHAI))
    assert len(state.messages) == 1
    early = datetime(2030, 1, 8, 7, 0, tzinfo=SHANGHAI)
    await _notify(ctx, rep, "early", early)
    await run_job(ctx, "deliver_outbox", now=early)
    assert _delivery(raw_db, "early")["next_attempt_at"] == datetime(2030, 1, 8, 8, 0, tzinfo=SHANGHAI)  # same morning
    await run_job(ctx, "deliver_outbox", now=datetime(2030, 1, 8, 8, 0, tzinfo=SHANGHAI))
    assert len(state.messages) == 3 and _delivery(raw_db, "night")["state"] == "sent"


@pytest.mark.gen_test
@pytest.mark.parametrize("fault,outcome", [
    (Fault(path=PATH_SUBSCRIBE_SEND, errcode=-1), "retry"),
    (Fault(path=PATH_SUBSCRIBE_SEND, status=502), "retry"),
    (Fault(path=PATH_SUBSCRIBE_SEND, malformed=True), "retry"),
    (Fault(path=PATH_SUBSCRIBE_SEND, delay=2.5), "retry"),  # longer than the 2 s test timeout
    (Fault(path=PATH_SUBSCRIBE_SEND, errcode=43101, errmsg="user refuse to accept the msg"), 43101),
    (Fault(path=PATH_SUBSCRIBE_SEND, errcode=40003), 40003),
    (Fault(path=PATH_SUBSCRIBE_SEND, errcode=47003), 47003),
])
async def test_wechat_failures_are_recorded(ctx, api, people, wechat, raw_db, fault, outcome):
    state, _ = wechat
    rep = await bound(ctx, people, state)
    await _subscribe(api, rep, 2)
    await _notify(ctx, rep, "k")
    state.add_fault(fault)
    await run_job(ctx, "deliver_outbox", now=DAY)
    d = _delivery(raw_db, "k")
    assert d["attempts"] == 1 and "claim" not in d
    if outcome == "retry":
        assert d["state"] == "pending" and d["errcode"] in (None, -1)
        assert d["next_attempt_at"] == DAY + timedelta(seconds=60)
        assert _remaining(raw_db, rep) == 2  # WeChat did not use the subscription
        await run_job(ctx, "deliver_outbox", now=DAY + timedelta(seconds=59))
        assert _delivery(raw_db, "k")["attempts"] == 1  # backing off
        await run_job(ctx, "deliver_outbox", now=DAY + timedelta(seconds=61))
        d = _delivery(raw_db, "k")
        assert d["state"] == "sent" and d["attempts"] == 2
        assert len([m for m in state.messages if m["template_id"] == TEMPLATE]) >= 1
        assert _remaining(raw_db, rep) == 1
    else:
        assert d["state"] == "failed" and d["errcode"] == outcome
        assert _remaining(raw_db, rep) == (0 if outcome == 43101 else 2)
        await run_job(ctx, "deliver_outbox", now=DAY + timedelta(hours=1))
        assert _delivery(raw_db, "k")["state"] == "failed" and state.messages == []  # never retried


@pytest.mark.gen_test
async def test_back_off_doubles_and_gives_up(ctx, api, people, wechat, raw_db):
    state, _ = wechat
    rep = await bound(ctx, people, state)
    await _subscribe(api, rep, 1)
    await _notify(ctx, rep, "k")
    state.add_fault(Fault(path=PATH_SUBSCRIBE_SEND, errcode=-1, times=10))
    at = DAY
    gaps = []
    for _ in range(ctx.settings.outbox_max_attempts):
        await run_job(ctx, "deliver_outbox", now=at)
        d = _delivery(raw_db, "k")
        if d["state"] != "pending":
            break
        gaps.append((d["next_attempt_at"] - at).total_seconds())
        at = d["next_attempt_at"]
    assert gaps == [60, 120, 240, 480, 960]
    assert d["state"] == "failed" and d["reason"] == "gave_up" and d["attempts"] == ctx.settings.outbox_max_attempts


@pytest.mark.gen_test
async def test_an_expired_access_token_is_refreshed_once(ctx, api, people, wechat, raw_db):
    state, _ = wechat
    rep = await bound(ctx, people, state)
    await _subscribe(api, rep, 1)
    await _notify(ctx, rep, "k")
    await ctx.wechat.access_token()
    state.expire_access_tokens()
    await run_job(ctx, "deliver_outbox", now=DAY)
    assert _delivery(raw_db, "k")["state"] == "sent" and len(state.messages) == 1


@pytest.mark.gen_test
async def test_two_workers_send_each_message_once(ctx, api, people, wechat, raw_db, mongo_uri, settings, db_name, clock):
    state, _ = wechat
    reps = [await bound(ctx, people, state) for _ in range(3)]
    for i, rep in enumerate(reps):
        await _subscribe(api, rep, 6)
        for j in range(6):
            await _notify(ctx, rep, f"k{i}-{j}", title=f"任务{i}-{j}")
    other_db = connect(mongo_uri, settings, db_name=db_name)
    try:
        other = build_context(settings, other_db, clock)
        # The job lease is bypassed on purpose: both workers run the delivery itself at once.
        first, second = await asyncio.gather(ctx.outbox.deliver_due(DAY), other.outbox.deliver_due(DAY))
    finally:
        await other_db.close()
    assert first["sent"] + second["sent"] == 18
    sent = sorted(m["data"]["thing1"]["value"] for m in state.messages)
    assert sent == sorted(f"任务{i}-{j}" for i in range(3) for j in range(6))  # each once, none twice
    assert all(_remaining(raw_db, rep) == 0 for rep in reps)
    assert raw_db.notifications.count_documents({"delivery.state": "sent"}) == 18


@pytest.mark.gen_test
async def test_a_worker_killed_mid_send_is_taken_over_after_its_claim(ctx, api, people, wechat, raw_db):
    state, _ = wechat
    rep = await bound(ctx, people, state)
    await _subscribe(api, rep, 2)
    await _notify(ctx, rep, "k")
    await ctx.wechat.access_token()
    state.add_fault(Fault(path=PATH_SUBSCRIBE_SEND, delay=1.0))
    worker = asyncio.ensure_future(ctx.outbox.deliver_due(DAY))
    await asyncio.sleep(0.4)
    worker.cancel()  # killed while waiting for WeChat
    await asyncio.sleep(0.8)  # (WeChat may or may not have got it: no way to know)
    d = _delivery(raw_db, "k")
    assert d["state"] == "sending" and d["claim_until"] == DAY + timedelta(seconds=60)
    before = len(state.messages)
    result = await ctx.outbox.deliver_due(DAY + timedelta(seconds=30))  # claim still live: hands off
    assert result["candidates"] == 0 and len(state.messages) == before
    await ctx.outbox.deliver_due(DAY + timedelta(seconds=61))  # claim ran out: another worker sends
    d = _delivery(raw_db, "k")
    assert d["state"] == "sent" and len(state.messages) == before + 1
