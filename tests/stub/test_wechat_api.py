"""Tests for the fake WeChat server API (miniprogram_stub.wechat_api)."""

import base64
import io
import json
import shutil
import subprocess
import time
from urllib.parse import urlencode

import pytest
from PIL import Image

from tornado.testing import bind_unused_port

from config.wechat_templates import MINIPROGRAM_DIR, load_templates, miniprogram_pages
from miniprogram_stub.wechat_api import (
    DEFAULT_APPID,
    DEFAULT_SECRET,
    StubState,
    make_stub_app,
    parse_phone,
    start_stub,
    value_error,
)

START = 1_700_000_000.0


class FakeClock:
    """Manually advanced clock injected into StubState."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def state(clock):
    return StubState(clock=clock)


@pytest.fixture
def app(state):
    return make_stub_app(state)


# ------------------------------------------------------------------ helpers


def _decode(response):
    return json.loads(response.body) if response.body else None


async def get(http_client, base_url, path, **params):
    url = base_url + path + ("?" + urlencode(params) if params else "")
    response = await http_client.fetch(url, raise_error=False)
    return response, _decode(response)


async def post(http_client, base_url, path, body=None, raw=None, **params):
    url = base_url + path + ("?" + urlencode(params) if params else "")
    payload = raw if raw is not None else json.dumps(body if body is not None else {})
    response = await http_client.fetch(url, method="POST", body=payload, raise_error=False)
    return response, _decode(response)


async def delete(http_client, base_url, path):
    response = await http_client.fetch(base_url + path, method="DELETE", raise_error=False)
    return response, _decode(response)


async def login_code(http_client, base_url, openid="o_user_1", **extra):
    _, body = await post(http_client, base_url, "/__stub__/login-codes", {"openid": openid, **extra})
    return body["code"]


async def code2session(http_client, base_url, code, appid=DEFAULT_APPID, secret=DEFAULT_SECRET):
    return await get(
        http_client,
        base_url,
        "/sns/jscode2session",
        appid=appid,
        secret=secret,
        js_code=code,
        grant_type="authorization_code",
    )


async def access_token(http_client, base_url):
    _, body = await get(
        http_client, base_url, "/cgi-bin/token", grant_type="client_credential", appid=DEFAULT_APPID, secret=DEFAULT_SECRET
    )
    return body["access_token"]


async def stable_token(http_client, base_url, **extra):
    body = {"grant_type": "client_credential", "appid": DEFAULT_APPID, "secret": DEFAULT_SECRET, **extra}
    return await post(http_client, base_url, "/cgi-bin/stable_token", body)


async def phone_code(http_client, base_url, phone="13800138000"):
    _, body = await post(http_client, base_url, "/__stub__/phone-codes", {"phone": phone})
    return body["code"]


TEMPLATE = "DEMO_TASK_REMINDER"  # thing1, time2, thing3 (miniprogram/templates.js)


async def accept(http_client, base_url, openid="o_user_1", template_ids=(TEMPLATE,), times=1, **extra):
    for _ in range(times):
        response, body = await post(http_client, base_url, "/__stub__/subscriptions", {"openid": openid, "template_ids": list(template_ids), **extra})
    return response, body


async def send_message(http_client, base_url, token, **overrides):
    body = {
        "touser": "o_user_1",
        "template_id": TEMPLATE,
        "page": "pages/tasks/tasks?id=42",
        "data": {"thing1": {"value": "回访张三"}, "time2": {"value": "2024年5月1日 10:00"}, "thing3": {"value": "明天上午十点前"}},
        "miniprogram_state": "developer",
        "lang": "zh_CN",
    }
    body.update(overrides)
    body = {key: value for key, value in body.items() if value is not None}
    return await post(http_client, base_url, "/cgi-bin/message/subscribe/send", body, access_token=token)


# ------------------------------------------------------------ jscode2session


@pytest.mark.gen_test
async def test_login_code_happy_path(http_client, base_url):
    code = await login_code(http_client, base_url, openid="o_alice", unionid="u_alice")
    response, body = await code2session(http_client, base_url, code)

    assert response.code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert "errcode" not in body
    assert body["openid"] == "o_alice"
    assert body["unionid"] == "u_alice"
    assert len(base64.b64decode(body["session_key"], validate=True)) == 16


@pytest.mark.gen_test
async def test_login_without_unionid_omits_it_and_session_key_changes(http_client, base_url):
    _, first = await code2session(http_client, base_url, await login_code(http_client, base_url, openid="o_bob"))
    _, second = await code2session(http_client, base_url, await login_code(http_client, base_url, openid="o_bob"))

    assert "unionid" not in first
    assert first["openid"] == second["openid"] == "o_bob"
    assert first["session_key"] != second["session_key"]


@pytest.mark.gen_test
async def test_login_code_is_single_use(http_client, base_url):
    code = await login_code(http_client, base_url)
    _, first = await code2session(http_client, base_url, code)
    _, second = await code2session(http_client, base_url, code)

    assert first["openid"] == "o_user_1"
    assert second == {"errcode": 40163, "errmsg": "code been used"}  # as WeChat answers a re-used code


@pytest.mark.gen_test
async def test_unknown_login_code_is_invalid(http_client, base_url):
    _, body = await code2session(http_client, base_url, "never-issued")
    assert body["errcode"] == 40029


@pytest.mark.gen_test
async def test_login_code_expires_after_five_minutes(http_client, base_url, clock):
    fresh = await login_code(http_client, base_url)
    stale = await login_code(http_client, base_url)

    clock.advance(299)
    _, ok = await code2session(http_client, base_url, fresh)
    clock.advance(2)  # 301 s after issue
    _, expired = await code2session(http_client, base_url, stale)

    assert ok["openid"] == "o_user_1"
    assert expired["errcode"] == 40029


@pytest.mark.gen_test
async def test_login_with_wrong_secret_or_appid(http_client, base_url):
    code = await login_code(http_client, base_url)
    _, bad_secret = await code2session(http_client, base_url, code, secret="nope")
    _, bad_appid = await code2session(http_client, base_url, code, appid="wx_other")
    _, ok = await code2session(http_client, base_url, code)

    assert bad_secret == {"errcode": 40125, "errmsg": "invalid appsecret"}
    assert bad_appid == {"errcode": 40013, "errmsg": "invalid appid"}
    assert ok["openid"] == "o_user_1"  # failed credential checks do not burn the code


# -------------------------------------------------------------------- tokens


@pytest.mark.gen_test
async def test_token_returns_new_token_each_call(http_client, base_url):
    response, body = await get(
        http_client, base_url, "/cgi-bin/token", grant_type="client_credential", appid=DEFAULT_APPID, secret=DEFAULT_SECRET
    )
    second = await access_token(http_client, base_url)

    assert response.code == 200
    assert body["expires_in"] == 7200
    assert "errcode" not in body
    assert body["access_token"] != second


@pytest.mark.gen_test
async def test_token_rejects_wrong_secret(http_client, base_url):
    _, body = await get(
        http_client, base_url, "/cgi-bin/token", grant_type="client_credential", appid=DEFAULT_APPID, secret="x"
    )
    assert body["errcode"] == 40125
    assert "access_token" not in body


@pytest.mark.gen_test
async def test_old_plain_token_stays_valid_five_minutes_after_refresh(http_client, base_url, clock):
    old = await access_token(http_client, base_url)
    await access_token(http_client, base_url)
    code_a = await phone_code(http_client, base_url)
    code_b = await phone_code(http_client, base_url)

    _, still_ok = await post(http_client, base_url, "/wxa/business/getuserphonenumber", {"code": code_a}, access_token=old)
    clock.advance(301)
    _, too_old = await post(http_client, base_url, "/wxa/business/getuserphonenumber", {"code": code_b}, access_token=old)

    assert still_ok["errcode"] == 0
    assert too_old["errcode"] == 42001


@pytest.mark.gen_test
async def test_stable_token_is_cached_until_force_refresh(http_client, base_url, clock):
    _, first = await stable_token(http_client, base_url)
    clock.advance(100)
    _, again = await stable_token(http_client, base_url, force_refresh=False)
    _, forced = await stable_token(http_client, base_url, force_refresh=True)

    assert first["expires_in"] == 7200
    assert again["access_token"] == first["access_token"]
    assert again["expires_in"] == 7100  # remaining lifetime, like WeChat
    assert forced["access_token"] != first["access_token"]
    assert forced["expires_in"] == 7200

    # force_refresh revokes the previous stable token
    _, revoked = await send_message(http_client, base_url, first["access_token"])
    assert revoked["errcode"] == 40001


@pytest.mark.gen_test
async def test_stable_token_renews_after_expiry(http_client, base_url, clock):
    _, first = await stable_token(http_client, base_url)
    clock.advance(7201)
    _, renewed = await stable_token(http_client, base_url)

    assert renewed["access_token"] != first["access_token"]
    assert renewed["expires_in"] == 7200


@pytest.mark.gen_test
async def test_stable_token_independent_of_plain_token(http_client, base_url):
    _, stable = await stable_token(http_client, base_url)
    await access_token(http_client, base_url)
    _, again = await stable_token(http_client, base_url)
    assert again["access_token"] == stable["access_token"]


@pytest.mark.gen_test
async def test_stable_token_errors(http_client, base_url):
    _, wrong_secret = await stable_token(http_client, base_url, secret="bad")
    _, wrong_grant = await stable_token(http_client, base_url, grant_type="authorization_code")
    _, not_json = await post(http_client, base_url, "/cgi-bin/stable_token", raw="appid=wx")

    assert wrong_secret["errcode"] == 40125
    assert wrong_grant["errcode"] == 40002
    assert not_json["errcode"] == 47001


# -------------------------------------------------------------- phone number


@pytest.mark.gen_test
async def test_phone_number_happy_path(http_client, base_url, clock):
    token = await access_token(http_client, base_url)
    code = await phone_code(http_client, base_url, "+86 138-0013-8000")
    clock.advance(30)
    response, body = await post(
        http_client, base_url, "/wxa/business/getuserphonenumber", {"code": code}, access_token=token
    )

    assert response.code == 200
    assert body == {
        "errcode": 0,
        "errmsg": "ok",
        "phone_info": {
            "phoneNumber": "13800138000",
            "purePhoneNumber": "13800138000",
            "countryCode": "86",
            "watermark": {"timestamp": int(START), "appid": DEFAULT_APPID},
        },
    }


@pytest.mark.gen_test
async def test_phone_code_is_single_use_and_expires(http_client, base_url, clock):
    token = await access_token(http_client, base_url)
    code = await phone_code(http_client, base_url)
    stale = await phone_code(http_client, base_url)
    path = "/wxa/business/getuserphonenumber"

    _, first = await post(http_client, base_url, path, {"code": code}, access_token=token)
    _, reused = await post(http_client, base_url, path, {"code": code}, access_token=token)
    clock.advance(301)
    _, expired = await post(http_client, base_url, path, {"code": stale}, access_token=token)

    assert first["errcode"] == 0
    assert reused == {"errcode": 40029, "errmsg": "invalid code"}
    assert expired["errcode"] == 40029


@pytest.mark.gen_test
async def test_phone_number_rejects_bad_access_token_without_burning_code(http_client, base_url):
    code = await phone_code(http_client, base_url)
    path = "/wxa/business/getuserphonenumber"

    _, bad = await post(http_client, base_url, path, {"code": code}, access_token="not-a-token")
    _, missing = await post(http_client, base_url, path, {"code": code})
    _, ok = await post(http_client, base_url, path, {"code": code}, access_token=await access_token(http_client, base_url))

    assert bad["errcode"] == 40001
    assert missing["errcode"] == 41001
    assert ok["phone_info"]["purePhoneNumber"] == "13800138000"


@pytest.mark.gen_test
async def test_phone_codes_endpoint_rejects_garbage(http_client, base_url):
    response, body = await post(http_client, base_url, "/__stub__/phone-codes", {"phone": "12345"})
    assert response.code == 400
    assert "error" in body


def test_parse_phone_formats():
    assert parse_phone("13800138000") == ("86", "13800138000")
    assert parse_phone("+86 138-0013-8000") == ("86", "13800138000")
    assert parse_phone("+8613800138000") == ("86", "13800138000")
    assert parse_phone("+852 9123 4567") == ("852", "91234567")
    with pytest.raises(ValueError):
        parse_phone("23800138000")


# --------------------------------------------------------- subscribe message


@pytest.mark.gen_test
async def test_subscribe_send_is_recorded(http_client, base_url, clock):
    await login_code(http_client, base_url, openid="o_user_1")
    await accept(http_client, base_url, times=2)
    token = await access_token(http_client, base_url)
    clock.advance(5)

    response, body = await send_message(http_client, base_url, token)
    _, second = await send_message(http_client, base_url, token)
    _, listed = await get(http_client, base_url, "/__stub__/messages")

    assert response.code == 200
    assert body["errcode"] == 0 and body["errmsg"] == "ok"
    assert isinstance(body["msgid"], int)
    assert second["msgid"] != body["msgid"]
    first_msg = listed["messages"][0]
    assert len(listed["messages"]) == 2
    assert first_msg["touser"] == "o_user_1"
    assert first_msg["template_id"] == TEMPLATE
    assert first_msg["page"] == "pages/tasks/tasks?id=42"
    assert first_msg["data"]["thing1"] == {"value": "回访张三"}
    assert first_msg["msgid"] == body["msgid"]
    assert first_msg["received_at"] == START + 5

    await delete(http_client, base_url, "/__stub__/messages")
    _, cleared = await get(http_client, base_url, "/__stub__/messages")
    assert cleared == {"messages": []}


@pytest.mark.gen_test
async def test_subscribe_send_fails_after_expire_access_tokens(http_client, base_url, state):
    await login_code(http_client, base_url)
    token = await access_token(http_client, base_url)
    _, stable = await stable_token(http_client, base_url)

    response, _ = await post(http_client, base_url, "/__stub__/expire-access-tokens")
    _, with_plain = await send_message(http_client, base_url, token)
    _, with_stable = await send_message(http_client, base_url, stable["access_token"])
    _, renewed = await stable_token(http_client, base_url)

    assert response.code == 200
    assert with_plain["errcode"] == 40001
    assert with_stable["errcode"] == 40001
    assert renewed["access_token"] != stable["access_token"]
    assert state.messages == []


@pytest.mark.gen_test
async def test_subscribe_send_token_expired_by_time(http_client, base_url, clock):
    await login_code(http_client, base_url)
    token = await access_token(http_client, base_url)
    clock.advance(7201)
    _, body = await send_message(http_client, base_url, token)
    assert body["errcode"] == 42001


@pytest.mark.gen_test
async def test_subscribe_send_validation_errors(http_client, base_url, state):
    await login_code(http_client, base_url, openid="o_user_1")
    await accept(http_client, base_url)
    token = await access_token(http_client, base_url)

    _, unknown_user = await send_message(http_client, base_url, token, touser="o_stranger")
    _, no_template = await send_message(http_client, base_url, token, template_id=None)
    _, bad_data = await send_message(http_client, base_url, token, data={"thing1": "no value wrapper"})

    assert unknown_user == {"errcode": 40003, "errmsg": "invalid openid"}
    assert no_template["errcode"] == 40037
    assert bad_data["errcode"] == 47003
    assert state.messages == []


# -------------------------------------------------------------------- faults


@pytest.mark.gen_test
async def test_fault_errcode_then_recovers(http_client, base_url):
    await post(http_client, base_url, "/__stub__/faults", {"path": "/sns/jscode2session", "errcode": 45011})
    code = await login_code(http_client, base_url)

    response, faulted = await code2session(http_client, base_url, code)
    _, normal = await code2session(http_client, base_url, code)

    assert response.code == 200
    assert faulted["errcode"] == 45011
    assert "minute-quota" in faulted["errmsg"]
    assert normal["openid"] == "o_user_1"  # the faulted call did not consume the code


@pytest.mark.gen_test
async def test_fault_custom_errmsg(http_client, base_url):
    await post(
        http_client, base_url, "/__stub__/faults", {"path": "/cgi-bin/token", "errcode": -1, "errmsg": "system busy"}
    )
    _, body = await get(
        http_client, base_url, "/cgi-bin/token", grant_type="client_credential", appid=DEFAULT_APPID, secret=DEFAULT_SECRET
    )
    assert body == {"errcode": -1, "errmsg": "system busy"}


@pytest.mark.gen_test
async def test_fault_malformed_body(http_client, base_url):
    await post(http_client, base_url, "/__stub__/faults", {"path": "/cgi-bin/stable_token", "malformed": True})
    response = await http_client.fetch(
        base_url + "/cgi-bin/stable_token",
        method="POST",
        body=json.dumps({"grant_type": "client_credential", "appid": DEFAULT_APPID, "secret": DEFAULT_SECRET}),
        raise_error=False,
    )
    assert response.code == 200
    with pytest.raises(ValueError):
        json.loads(response.body)
    _, normal = await stable_token(http_client, base_url)
    assert "access_token" in normal


@pytest.mark.gen_test
async def test_fault_http_status(http_client, base_url):
    await post(http_client, base_url, "/__stub__/faults", {"path": "/cgi-bin/token", "status": 503})
    first = await http_client.fetch(
        base_url + "/cgi-bin/token?" + urlencode({"grant_type": "client_credential", "appid": DEFAULT_APPID, "secret": DEFAULT_SECRET}),
        raise_error=False,
    )
    second = await access_token(http_client, base_url)

    assert first.code == 503
    assert second


@pytest.mark.gen_test
async def test_fault_delay_is_non_blocking(http_client, base_url, state):
    await post(http_client, base_url, "/__stub__/faults", {"path": "/cgi-bin/token", "delay": 0.3})
    started = time.monotonic()
    slow = http_client.fetch(
        base_url + "/cgi-bin/token?" + urlencode({"grant_type": "client_credential", "appid": DEFAULT_APPID, "secret": DEFAULT_SECRET}),
        raise_error=False,
    )
    # Once the slow call is in its sleep, other requests are still served promptly.
    while state.calls.get("/cgi-bin/token") != 1:
        assert time.monotonic() - started < 0.25, "delayed call never reached the stub"
        response, _ = await get(http_client, base_url, "/__stub__/calls")
        assert response.code == 200
    fast_elapsed = time.monotonic() - started
    response = await slow
    slow_elapsed = time.monotonic() - started

    assert fast_elapsed < 0.25
    assert slow_elapsed >= 0.3
    assert response.code == 200
    assert "access_token" in json.loads(response.body)  # answered normally after the delay


@pytest.mark.gen_test
async def test_fault_times_counting_and_clear(http_client, base_url, state):
    await post(
        http_client, base_url, "/__stub__/faults", {"path": "/cgi-bin/stable_token", "errcode": -1, "times": 2}
    )
    results = [(await stable_token(http_client, base_url))[1] for _ in range(3)]

    assert [body.get("errcode") for body in results] == [-1, -1, None]
    assert "access_token" in results[2]

    await post(http_client, base_url, "/__stub__/faults", {"path": "/cgi-bin/token", "errcode": -1, "times": 5})
    response, _ = await delete(http_client, base_url, "/__stub__/faults")
    assert response.code == 200
    assert state.faults == []
    assert await access_token(http_client, base_url)


@pytest.mark.gen_test
async def test_fault_validation(http_client, base_url):
    unknown, _ = await post(http_client, base_url, "/__stub__/faults", {"path": "/nope", "errcode": 1})
    empty, _ = await post(http_client, base_url, "/__stub__/faults", {"path": "/cgi-bin/token"})
    assert unknown.code == 400
    assert empty.code == 400


# ------------------------------------------------------------- misc control


@pytest.mark.gen_test
async def test_calls_counts_per_path(http_client, base_url):
    await stable_token(http_client, base_url)
    await stable_token(http_client, base_url)
    await access_token(http_client, base_url)
    _, body = await get(http_client, base_url, "/__stub__/calls")

    assert body["calls"] == {"/cgi-bin/stable_token": 2, "/cgi-bin/token": 1}

    await delete(http_client, base_url, "/__stub__/calls")
    _, reset = await get(http_client, base_url, "/__stub__/calls")
    assert reset == {"calls": {}}


@pytest.mark.gen_test
async def test_login_codes_endpoint_registers_user(http_client, base_url, state):
    response, body = await post(http_client, base_url, "/__stub__/login-codes", {"openid": "o_new", "unionid": "u_new"})
    assert response.code == 200
    assert set(body) >= {"code"}
    assert state.users["o_new"] == "u_new"


@pytest.mark.gen_test
async def test_unknown_path_is_404(http_client, base_url):
    response, body = await get(http_client, base_url, "/cgi-bin/nope")
    assert response.code == 404
    assert response.headers["Content-Type"].startswith("application/json")
    assert body["status"] == 404


@pytest.mark.gen_test
async def test_start_stub_listens_with_given_state(http_client):
    sock, port = bind_unused_port()
    sock.close()
    server, state = await start_stub(port=port, state=StubState(appid="wx_custom", secret="s"))
    try:
        _, body = await get(
            http_client, f"http://127.0.0.1:{port}", "/cgi-bin/token", grant_type="client_credential", appid="wx_custom", secret="s"
        )
    finally:
        server.stop()
    assert body["expires_in"] == 7200
    assert body["access_token"] in state.tokens


# ------------------------------------------------- WeChat's refusals


@pytest.mark.gen_test
async def test_one_acceptance_allows_one_message(http_client, base_url, state):
    await login_code(http_client, base_url)
    token = await access_token(http_client, base_url)
    _, none_yet = await send_message(http_client, base_url, token)
    response, answer = await accept(http_client, base_url, template_ids=[TEMPLATE, "DEMO_LEAD_ASSIGNED"], decisions={"DEMO_LEAD_ASSIGNED": "reject"})
    _, listed = await get(http_client, base_url, "/__stub__/subscriptions", openid="o_user_1")
    _, first = await send_message(http_client, base_url, token)
    _, second = await send_message(http_client, base_url, token)
    _, rejected = await send_message(http_client, base_url, token, template_id="DEMO_LEAD_ASSIGNED", page="pages/lead/lead",
                                     data={"thing1": {"value": "新线索"}, "thing2": {"value": "王先生"}})

    assert none_yet == {"errcode": 43101, "errmsg": "user refuse to accept the msg"}
    assert response.code == 200
    assert answer == {"errMsg": "requestSubscribeMessage:ok", TEMPLATE: "accept", "DEMO_LEAD_ASSIGNED": "reject"}
    assert listed == {"subscriptions": {TEMPLATE: 1}}
    assert first["errcode"] == 0
    assert second["errcode"] == 43101 and rejected["errcode"] == 43101
    assert len(state.messages) == 1 and state.subscriptions_left("o_user_1") == {TEMPLATE: 0}


@pytest.mark.gen_test
async def test_request_subscribe_message_refuses_what_wx_refuses(http_client, base_url):
    unknown, body = await accept(http_client, base_url, template_ids=["NOT_A_TEMPLATE"])
    four, _ = await accept(http_client, base_url, template_ids=["DEMO_LEAD_ASSIGNED", "DEMO_TASK_REMINDER", "DEMO_RENEWAL_DUE", "DEMO_PAYMENT_DUE"])
    garbage, _ = await post(http_client, base_url, "/__stub__/subscriptions", {"openid": "o_user_1"})
    assert unknown.code == four.code == garbage.code == 400
    assert body["errMsg"].startswith("requestSubscribeMessage:fail")


@pytest.mark.gen_test
async def test_unknown_template_is_40037_and_page_outside_app_json_is_41030(http_client, base_url, state):
    await login_code(http_client, base_url)
    await accept(http_client, base_url)
    token = await access_token(http_client, base_url)
    _, unknown = await send_message(http_client, base_url, token, template_id="TASK_REMINDER_TEMPLATE_ID")
    _, bad_page = await send_message(http_client, base_url, token, page="pages/tasks/detail?id=42")
    _, no_page = await send_message(http_client, base_url, token, page=None)  # no page: the card does not open anything

    assert unknown == {"errcode": 40037, "errmsg": "invalid template_id"}
    assert bad_page["errcode"] == 41030
    assert no_page["errcode"] == 0 and len(state.messages) == 1


def test_the_stub_knows_the_mini_programs_templates_and_pages():
    state = StubState()
    catalogue = load_templates()
    assert state.pages == set(miniprogram_pages())
    assert "pages/contract/contract" in state.pages
    assert state.templates == {t["template_id"]: list(t["fields"].values()) for t in catalogue.values()}
    for kind, template in catalogue.items():
        assert template["page"] in state.pages, f"{kind} opens {template['page']}, which app.json does not have"


@pytest.mark.parametrize("key, value, ok", [
    ("thing1", "一" * 20, True), ("thing1", "一" * 21, False), ("thing1", "", False), ("thing1", "  ", False),
    ("phrase2", "配送中", True), ("phrase2", "货物配送中了", False), ("phrase2", "ok", False),
    ("name3", "张三", True), ("name3", "欧阳" * 6, False), ("name3", "Alexander Hamilton", True), ("name3", "A" * 21, False),
    ("character_string4", "A" * 32, True), ("character_string4", "A" * 33, False), ("character_string4", "订单", False),
    ("number5", "30", True), ("number5", "3.5", True), ("number5", "-3", False), ("number5", "1" * 33, False), ("number5", "三", False),
    ("letter6", "abc", True), ("letter6", "ab1", False),
    ("time7", "15:01", True), ("time7", "2019年10月1日 15:01", True), ("time7", "2019年10月01日 15:01", True),
    ("time7", "2019年10月1日 15:01~2019年10月1日 16:00", True), ("time7", "2019-10-01 15:01", False), ("time7", "25:00", False),
    ("date8", "2019年10月1日", True), ("date8", "2019年10月1日 15:01", True), ("date8", "2019-10-01", False), ("date8", "明天", False),
    ("amount9", "¥100.50", True), ("amount9", "100元", True), ("amount9", "12345678901", False),
    ("phone_number10", "+86-0766-66888866", True), ("phone_number10", "1" * 18, False),
    ("car_number11", "粤A8Z888挂", True), ("car_number11", "粤A8Z888挂99", False),
    ("symbol12", "★", True), ("symbol12", "a", False),
])
def test_value_rules_by_keyword_type(key, value, ok):
    assert (value_error(key, value) is None) == ok, value_error(key, value)


@pytest.mark.gen_test
async def test_over_limit_values_are_47003_naming_the_field(http_client, base_url, state):
    await login_code(http_client, base_url)
    await accept(http_client, base_url)
    token = await access_token(http_client, base_url)
    good = {"thing1": {"value": "回访张三"}, "time2": {"value": "2024年5月1日 10:00"}, "thing3": {"value": "明天"}}
    _, long_thing = await send_message(http_client, base_url, token, data={**good, "thing1": {"value": "这是一个超过了微信二十个字限制的待办标题啊啊"}})
    _, iso_time = await send_message(http_client, base_url, token, data={**good, "time2": {"value": "2024-05-01T10:00:00+08:00"}})
    _, missing = await send_message(http_client, base_url, token, data={"thing1": good["thing1"], "time2": good["time2"]})
    _, extra = await send_message(http_client, base_url, token, data={**good, "phrase4": {"value": "完成"}})

    assert long_thing == {"errcode": 47003, "errmsg": "argument invalid! data.thing1.value invalid"}
    assert iso_time["errcode"] == 47003 and "time2" in iso_time["errmsg"]
    assert missing == {"errcode": 47003, "errmsg": "argument invalid! data.thing3.value is empty"}
    assert extra["errcode"] == 47003 and "phrase4" in extra["errmsg"]
    assert state.messages == [] and state.subscriptions_left("o_user_1") == {TEMPLATE: 1}  # a refused send uses nothing


@pytest.mark.gen_test
async def test_templates_can_be_added_like_in_the_console(http_client, base_url, state):
    response, _ = await post(http_client, base_url, "/__stub__/templates", {"template_id": "tmpl-x", "keywords": ["thing1", "phrase2"]})
    bad, _ = await post(http_client, base_url, "/__stub__/templates", {"template_id": "tmpl-y", "keywords": ["nonsense1"]})
    _, listed = await get(http_client, base_url, "/__stub__/templates")
    assert response.code == 200 and bad.code == 400
    assert listed["templates"]["tmpl-x"] == ["thing1", "phrase2"] and "tmpl-y" not in listed["templates"]


@pytest.mark.gen_test
async def test_a_control_character_in_a_login_code_is_41008(http_client, base_url):
    code = await login_code(http_client, base_url)
    _, body = await code2session(http_client, base_url, code + "\x01")
    _, blank = await code2session(http_client, base_url, " ")
    assert body == {"errcode": 41008, "errmsg": "missing code"} and blank["errcode"] == 41008
    _, ok = await code2session(http_client, base_url, code)
    assert ok["openid"] == "o_user_1"


@pytest.mark.gen_test
async def test_code2session_is_limited_to_100_a_minute_per_user(http_client, base_url, clock):
    for _ in range(100):
        _, ok = await code2session(http_client, base_url, await login_code(http_client, base_url, openid="o_busy"))
        assert ok["openid"] == "o_busy"
    held = await login_code(http_client, base_url, openid="o_busy")
    _, limited = await code2session(http_client, base_url, held)
    _, other_user = await code2session(http_client, base_url, await login_code(http_client, base_url, openid="o_calm"))
    clock.advance(61)
    _, next_minute = await code2session(http_client, base_url, held)  # the refused code was not spent

    assert limited["errcode"] == 45011
    assert other_user["openid"] == "o_calm"
    assert next_minute["openid"] == "o_busy"


@pytest.mark.gen_test
async def test_stable_token_force_refresh_rules(http_client, base_url, clock, state):
    _, first = await stable_token(http_client, base_url)
    _, forced = await stable_token(http_client, base_url, force_refresh=True)
    clock.advance(10)
    _, too_soon = await stable_token(http_client, base_url, force_refresh=True)  # within 30 s: not refreshed
    assert forced["access_token"] != first["access_token"]
    assert too_soon["access_token"] == forced["access_token"]
    for _ in range(19):
        clock.advance(31)
        _, again = await stable_token(http_client, base_url, force_refresh=True)
        assert "access_token" in again
    clock.advance(31)
    _, over = await stable_token(http_client, base_url, force_refresh=True)  # the 21st of the day
    _, normal = await stable_token(http_client, base_url)
    assert over["errcode"] == 45009
    assert normal["access_token"] == again["access_token"]


@pytest.mark.gen_test
async def test_limits_can_be_lowered_through_the_helper(http_client, base_url):
    response, body = await post(http_client, base_url, "/__stub__/limits", {"name": "stable_token_minute", "max": 1})
    _, first = await stable_token(http_client, base_url)
    _, second = await stable_token(http_client, base_url)
    bad, _ = await post(http_client, base_url, "/__stub__/limits", {"name": "nope", "max": 1})
    _, listed = await get(http_client, base_url, "/__stub__/limits")
    assert response.code == 200 and body["limit"]["max"] == 1
    assert "access_token" in first and second == {"errcode": 45011, "errmsg": "api minute-quota reach limit  mustslower  retry next minute"}
    assert bad.code == 400 and listed["limits"]["jscode2session_per_user_minute"] == {"max": 100, "window_s": 60, "errcode": 45011}


def test_the_mini_programs_config_asks_for_the_catalogues_templates():
    """config.js (what the pages pass to wx.requestSubscribeMessage) reads the same catalogue."""
    node = shutil.which("node")
    assert node is not None, "node is required (make test runs the mini-program's tests with it)"
    out = subprocess.run([node, "-e", "console.log(JSON.stringify(require('./config').templates))"], cwd=MINIPROGRAM_DIR,
                         capture_output=True, text=True, timeout=30, check=True).stdout
    assert json.loads(out) == {kind: t["template_id"] for kind, t in load_templates().items()}


# ------------------------------------------------------------ wxacode.getUnlimited


async def wxacode(http_client, base_url, token, **body):
    """POST /wxa/getwxacodeunlimit: (response, PNG image or None, JSON error or None)."""
    response = await http_client.fetch(f"{base_url}/wxa/getwxacodeunlimit?access_token={token}", method="POST",
                                       body=json.dumps(body), raise_error=False)
    if response.headers.get("Content-Type") == "image/png":
        return response, Image.open(io.BytesIO(response.body)), None
    return response, None, json.loads(response.body)


@pytest.mark.gen_test
async def test_wxacode_answers_a_png_naming_its_scene_and_records_the_call(http_client, base_url, state):
    _, token_body = await stable_token(http_client, base_url)
    response, image, error = await wxacode(http_client, base_url, token_body["access_token"], scene="expo26~" + "a" * 24,
                                           page="pages/form/form", env_version="trial", check_path=False, width=280)
    assert error is None and response.body.startswith(b"\x89PNG")
    assert image.size == (280, 280) and image.text == {"scene": "expo26~" + "a" * 24, "page": "pages/form/form", "env_version": "trial"}
    _, listed = await get(http_client, base_url, "/__stub__/wxacodes")
    assert [(c["scene"], c["page"], c["env_version"], c["check_path"], c["width"]) for c in listed["wxacodes"]] == [
        ("expo26~" + "a" * 24, "pages/form/form", "trial", False, 280)]


@pytest.mark.gen_test
async def test_wxacode_refuses_what_wechat_refuses(http_client, base_url, state):
    _, token_body = await stable_token(http_client, base_url)
    token = token_body["access_token"]
    cases = [
        ("bad-token", {"scene": "a"}, 40001),
        (token, {}, 40169),  # no scene
        (token, {"scene": "x" * 33}, 40169),  # longer than 32
        (token, {"scene": "表单"}, 40097),  # not one of the allowed characters
        (token, {"scene": "a", "width": 1281}, 40097),
        (token, {"scene": "a", "env_version": "beta"}, 40097),
        (token, {"scene": "a", "page": "pages/nowhere/nowhere"}, 41030),  # check_path: not in app.json
        (token, {"scene": "a", "page": "/pages/form/form"}, 41030),  # no leading slash
        (token, {"scene": "a", "page": "pages/form/form?x=1"}, 41030),  # no query: it goes in the scene
    ]
    for used, body, errcode in cases:
        _, image, error = await wxacode(http_client, base_url, used, **body)
        assert image is None and error["errcode"] == errcode, (body, error)
    _, image, _ = await wxacode(http_client, base_url, token, scene="a", page="pages/nowhere/nowhere", check_path=False)
    assert image is not None  # check_path false: an unpublished page is fine
    assert [c["page"] for c in state.wxacodes] == ["pages/nowhere/nowhere"]
