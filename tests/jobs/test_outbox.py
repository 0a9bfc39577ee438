"""deliver_outbox: WeChat subscribe messages from the notification outbox, exactly once."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from jobs.registry import load_jobs, run_job
from miniprogram_stub.wechat_api import PATH_SUBSCRIBE_SEND, Fault, value_error
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
        "wechat_templates": {"task_reminder": {"template_id": TEMPLATE, "page": "pages/tasks/tasks", "fields": {"title": "thing1", "due_at": "time2", "body": "thing3"}}},
        "outbox_claim_s": 60,
    }


@pytest.fixture(autouse=True)
def stub_template(wechat):
    """The test template is one of the mini-program's templates on WeChat's side too."""
    wechat[0].add_template(TEMPLATE, ["thing1", "time2", "thing3"])


async def _subscribe(api, state, person, n: int = 1, template: str = TEMPLATE, *, on_wechat: bool = True) -> int:
    """The user accepts ``n`` times in the mini-program: WeChat counts each acceptance (when the
    user has an openid) and the page reports each to the server."""
    for _ in range(n):
        if on_wechat and person.user.get("openid"):
            state.accept_subscriptions(person.user["openid"], [template])
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
    await _subscribe(api, state, rep, 2)
    await _notify(ctx, rep, "k1", title="这是一个非常非常长的待办标题，超过了微信二十个字的限制")
    for _ in range(2):  # the same moment twice: one message
        await run_job(ctx, "deliver_outbox", now=DAY + timedelta(seconds=5))
    assert len(state.messages) == 1
    [msg] = state.messages
    assert msg["touser"] == rep.user["openid"] and msg["template_id"] == TEMPLATE and msg["page"] == "pages/tasks/tasks?id=t1"
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
    await _subscribe(api, state, plain, 1)
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
async def test_quiet_hours_are_the_recipients_teams(ctx, api, people, wechat, raw_db):
    """Team 华南 has no quiet hours, team 华北 keeps the default 21:00-08:00, team 西部 is quiet
    18:00-09:00: at 21:30 only 华南's rep gets the message now, and each deferred one waits for
    its own team's morning."""
    from team_settings_kit import set_team_settings

    state, _ = wechat
    north, south, west = [await bound(ctx, people, state, team=t) for t in ("华北销售部", "华南销售部", "西部销售部")]
    await set_team_settings(ctx, south.team_id, reminders={"quiet_hours": ""})
    await set_team_settings(ctx, west.team_id, reminders={"quiet_hours": "18:00-09:00"})
    for person in (north, south, west):
        await _subscribe(api, state, person)
    night = datetime(2030, 1, 7, 21, 30, tzinfo=SHANGHAI)
    for person in (north, south, west):
        await _notify(ctx, person, f"night-{person.team_id}", night)
    result = await run_job(ctx, "deliver_outbox", now=night)
    assert (result["sent"], result["deferred"]) == (1, 2) and [m["touser"] for m in state.messages] == [south.user["openid"]]
    assert _delivery(raw_db, f"night-{north.team_id}")["next_attempt_at"] == datetime(2030, 1, 8, 8, 0, tzinfo=SHANGHAI)
    assert _delivery(raw_db, f"night-{west.team_id}")["next_attempt_at"] == datetime(2030, 1, 8, 9, 0, tzinfo=SHANGHAI)


@pytest.mark.gen_test
async def test_quiet_hours_hold_non_urgent_messages_until_morning(ctx, api, people, wechat, raw_db):
    state, _ = wechat
    rep = await bound(ctx, people, state)
    await _subscribe(api, state, rep, 3)
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
    (Fault(path=PATH_SUBSCRIBE_SEND, errcode=45011), "retry"),  # minute quota: back off, then send
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
    await _subscribe(api, state, rep, 2)
    await _notify(ctx, rep, "k")
    state.add_fault(fault)
    await run_job(ctx, "deliver_outbox", now=DAY)
    d = _delivery(raw_db, "k")
    assert d["attempts"] == 1 and "claim" not in d
    if outcome == "retry":
        assert d["state"] == "pending" and d["errcode"] in (None, -1, 45011)
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
    await _subscribe(api, state, rep, 1)
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
    await _subscribe(api, state, rep, 1)
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
        await _subscribe(api, state, rep, 6)
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
    await _subscribe(api, state, rep, 2)
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


# ---------------------------------------------------------------- the fake WeChat refuses as WeChat does
@pytest.mark.gen_test
async def test_a_send_wechat_has_no_acceptance_for_is_refused_and_the_count_consumed(ctx, api, people, wechat, raw_db):
    state, _ = wechat
    rep = await bound(ctx, people, state)
    await _subscribe(api, state, rep, 1)  # one real acceptance on the phone ...
    await _subscribe(api, state, rep, 1, on_wechat=False)  # ... and one report WeChat never saw (a replayed request)
    for key in ("first", "second", "third"):
        await _notify(ctx, rep, key)
    await run_job(ctx, "deliver_outbox", now=DAY)
    assert [_delivery(raw_db, k)["state"] for k in ("first", "second")] == ["sent", "failed"]
    refused = _delivery(raw_db, "second")
    assert refused["errcode"] == 43101 and refused["reason"] == "refused"
    assert _remaining(raw_db, rep) == 0  # WeChat has none left: neither have we
    third = _delivery(raw_db, "third")
    assert (third["state"], third["reason"]) == ("in_app_only", "no_subscription")
    assert len(state.messages) == 1
    await run_job(ctx, "deliver_outbox", now=DAY + timedelta(hours=1))
    assert _delivery(raw_db, "second")["state"] == "failed" and len(state.messages) == 1  # not retried


SHAPES = "tmpl-every-type"


class TestValuesShapedForEveryType:
    @pytest.fixture
    def settings_overrides(self) -> dict:
        fields = {"title": "thing1", "body": "phrase2", "who": "name3", "ref": "character_string4", "days": "number5",
                  "due_at": "time6", "day": "date7", "code": "letter8", "missing": "thing9"}
        return {"wechat_templates": {"task_reminder": {"template_id": SHAPES, "page": "pages/tasks/tasks", "fields": fields}}}

    @pytest.mark.gen_test
    async def test_values_over_their_limits_are_shaped_and_wechat_accepts_them(self, ctx, api, people, wechat, raw_db):
        state, _ = wechat
        state.add_template(SHAPES, ["thing1", "phrase2", "name3", "character_string4", "number5", "time6", "date7", "letter8", "thing9"])
        rep = await bound(ctx, people, state)
        await _subscribe(api, state, rep, 1, SHAPES)
        data = {"task_id": "t1", "who": "欧阳不知道叫什么名字的客户先生", "ref": "合同HT-2030-0001-ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                "days": "还有 12 天", "due_at": "2030-01-07T03:00:00+00:00", "day": "2030-01-09", "code": "A-1b 2C"}
        item = notification(rep.id, "task_reminder", "这是一个非常非常长的待办标题，超过了微信二十个字的限制",
                            "Please 尽快处理这个待办 ok", "shapes", data=data)
        await ctx.notifications.notify([item], DAY)
        await run_job(ctx, "deliver_outbox", now=DAY)
        assert _delivery(raw_db, "shapes")["state"] == "sent", _delivery(raw_db, "shapes")
        [msg] = state.messages
        values = {k: v["value"] for k, v in msg["data"].items()}
        assert all(value_error(k, v) is None for k, v in values.items())
        assert len(values["thing1"]) == 20 and values["thing1"].endswith("…")
        assert values["phrase2"] == "尽快处理这"
        assert len(values["name3"]) == 10
        assert values["character_string4"] == "HT-2030-0001-ABCDEFGHIJKLMNOPQRS"
        assert values["number5"] == "12"
        assert values["time6"] == "2030年1月7日 11:00" and values["date7"] == "2030年1月9日"
        assert values["letter8"] == "AbC"
        assert values["thing9"] == "-"  # no value: WeChat refuses empty ones


UNKNOWN = "tmpl-not-on-wechat"


class TestPermanentRefusals:
    @pytest.fixture
    def settings_overrides(self) -> dict:
        return {"wechat_templates": {
            "task_reminder": {"template_id": UNKNOWN, "page": "pages/tasks/tasks", "fields": {"title": "thing1"}},  # a typo in the config
            "task_assigned": {"template_id": TEMPLATE, "page": "pages/tasks/detail", "fields": {"title": "thing1", "due_at": "time2", "body": "thing3"}},  # no such page
        }}

    @pytest.mark.gen_test
    @pytest.mark.parametrize("kind, errcode, reason", [
        ("task_reminder", 40037, "unknown_template"),
        ("task_assigned", 41030, "bad_page"),
    ])
    async def test_an_unknown_template_or_page_fails_for_good_and_is_logged(self, ctx, api, people, wechat, raw_db, captured_logs, kind, errcode, reason):
        state, _ = wechat
        rep = await bound(ctx, people, state)
        template = ctx.outbox.templates[kind]["template_id"]
        await _subscribe(api, state, rep, 1, template, on_wechat=template != UNKNOWN)
        await _notify(ctx, rep, "k", kind=kind)
        result = await run_job(ctx, "deliver_outbox", now=DAY)
        d = _delivery(raw_db, "k")
        assert result["failed"] == 1 and d["state"] == "failed" and (d["errcode"], d["reason"]) == (errcode, reason)
        assert _remaining(raw_db, rep, template) == 1  # WeChat did not use the subscription
        await run_job(ctx, "deliver_outbox", now=DAY + timedelta(hours=2))
        assert _delivery(raw_db, "k")["attempts"] == 1 and state.messages == []  # never retried
        lines = [line for line in captured_logs() if "did not deliver" in line]
        assert len(lines) == 1 and f'"errcode": {errcode}' in lines[0] and reason in lines[0]


@pytest.mark.gen_test
async def test_renewal_and_payment_messages_open_the_contract(ctx, api, people, wechat, raw_db):
    """The built-in templates (the mini-program's catalogue): renewal and payment reminders open
    pages/contract/contract with the contract's id, a page the mini-program has."""
    state, _ = wechat
    rep = await bound(ctx, people, state)
    renewal, payment = ctx.outbox.templates["renewal_due"]["template_id"], ctx.outbox.templates["payment_due"]["template_id"]
    await _subscribe(api, state, rep, 1, renewal)
    await _subscribe(api, state, rep, 1, payment)
    await ctx.notifications.notify([
        notification(rep.id, "renewal_due", "合同即将到期", "《CRM 年度订阅》将于 2030-02-06 到期，还有 30 天，请跟进续约", "renewal:c1:30",
                     data={"contract_id": "c1", "days_left": 30, "offset": 30}),
        notification(rep.id, "payment_due", "回款即将到期", "《CRM 年度订阅》第 1 期 ¥50,000.00 将于 2030-01-10 到期", "payment:c1:1:before",
                     data={"contract_id": "c1", "instalment": 1, "due_date": "2030-01-10", "outstanding_fen": 5_000_000}),
    ], DAY)
    await run_job(ctx, "deliver_outbox", now=DAY)
    pages = sorted((m["template_id"], m["page"]) for m in state.messages)
    assert pages == sorted([(renewal, "pages/contract/contract?id=c1"), (payment, "pages/contract/contract?id=c1")])
    assert next(m for m in state.messages if m["template_id"] == payment)["data"]["date3"]["value"] == "2030年1月10日"
