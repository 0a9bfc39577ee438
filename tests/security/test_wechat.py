"""WeChat probes, as a user or an operator would notice them: a login code with a control
character is a clean 4xx (not "WeChat is down"), a re-used code is refused, a database dump holds no
WeChat access token, and the logs keep WeChat's errcodes readable while masking the secrets."""

from __future__ import annotations

import json
import uuid
from urllib.parse import urlencode

import pytest
from tornado.httpclient import AsyncHTTPClient

from miniprogram_stub.wechat_api import PATH_JSCODE2SESSION, Fault
from server.errors import Unauthorized
from server.logs import scrub

WX_LOGIN = "/api/v1/auth/wechat-login"


def _openid() -> str:
    return "o" + uuid.uuid4().hex[:27]


@pytest.mark.gen_test
@pytest.mark.parametrize("garbage", ["\x00", "\x01", "\x1f", "\x7f", "\n", "\u2028"], ids=["nul", "soh", "us", "del", "newline", "line-separator"])
async def test_a_control_character_in_a_login_code_is_a_clean_4xx(api, ctx, wechat, raw_db, garbage):
    state, _ = wechat
    code = state.issue_login_code(_openid())["code"]
    bad = code[:8] + garbage + code[8:]
    resp = await api.post(WX_LOGIN, json={"code": bad})
    # refused as bad input (the request schema, 422) or as a bad code (401): never "WeChat is down"
    assert (resp.status, resp.error_code) in ((422, "request.invalid"), (401, "auth.wechat_code_invalid")), resp.body
    assert raw_db.users.count_documents({}) == 0
    with pytest.raises(Unauthorized) as caught:  # the WeChat client refuses it too, without asking WeChat
        await ctx.wechat.code2session(bad)
    assert caught.value.code == "auth.wechat_code_invalid" and state.calls.get(PATH_JSCODE2SESSION) is None
    assert (await api.post(WX_LOGIN, json={"code": code})).status == 200  # the real code still works


@pytest.mark.gen_test
async def test_wechats_41008_is_a_bad_code_not_an_outage(api, wechat, raw_db):
    state, _ = wechat
    state.add_fault(Fault(path=PATH_JSCODE2SESSION, errcode=41008))
    resp = await api.post(WX_LOGIN, json={"code": state.issue_login_code(_openid())["code"]})
    assert (resp.status, resp.error_code) == (401, "auth.wechat_code_invalid"), resp.body
    assert raw_db.users.count_documents({}) == 0


@pytest.mark.gen_test
async def test_a_replayed_login_code_is_refused_by_wechat_with_40163(api, wechat, raw_db):
    state, base = wechat
    code = state.issue_login_code(_openid())["code"]
    assert (await api.post(WX_LOGIN, json={"code": code})).status == 200
    replay = await api.post(WX_LOGIN, json={"code": code})
    assert (replay.status, replay.error_code) == (401, "auth.wechat_code_invalid")
    assert raw_db.users.count_documents({}) == 1
    # the fake WeChat says what WeChat says to a spent code
    query = urlencode({"appid": state.appid, "secret": state.secret, "js_code": code, "grant_type": "authorization_code"})
    answer = json.loads((await AsyncHTTPClient().fetch(f"{base}{PATH_JSCODE2SESSION}?{query}")).body)
    assert answer["errcode"] == 40163


@pytest.mark.gen_test
async def test_too_many_logins_in_a_minute_get_503_with_retry_after(api, wechat, raw_db):
    state, _ = wechat
    state.limits["jscode2session_per_user_minute"].max = 2  # WeChat allows 100 a minute per user
    openid = _openid()
    for _ in range(2):
        assert (await api.post(WX_LOGIN, json={"code": state.issue_login_code(openid)["code"]})).status == 200
    resp = await api.post(WX_LOGIN, json={"code": state.issue_login_code(openid)["code"]})
    assert (resp.status, resp.error_code) == (503, "wechat.rate_limited")
    assert resp.headers.get("Retry-After")
    assert raw_db.users.count_documents({"openid": openid}) == 1


@pytest.mark.gen_test
async def test_a_database_dump_holds_no_wechat_access_token(ctx, wechat, raw_db):
    state, _ = wechat
    token = await ctx.wechat.access_token()
    dump = json.dumps([list(raw_db[name].find()) for name in raw_db.list_collection_names()], default=str)
    assert token not in dump
    assert token in state.tokens  # it is a real token WeChat accepts


@pytest.mark.gen_test
async def test_logs_keep_wechat_errcodes_and_mask_the_secrets(api, wechat, captured_logs):
    state, _ = wechat
    state.add_fault(Fault(path=PATH_JSCODE2SESSION, errcode=40029))
    code = state.issue_login_code(_openid())["code"]
    assert (await api.post(WX_LOGIN, json={"code": code})).status == 401
    lines = captured_logs()
    assert any('"errcode": 40029' in line for line in lines), lines
    assert not any(code in line or state.secret in line for line in lines)
    assert scrub('{"errcode": 45011, "js_code": "0a1b", "phone_code": "9f9f", "secret": "s3"}') == \
        '{"errcode": 45011, "js_code": "***", "phone_code": "***", "secret": "***"}'
