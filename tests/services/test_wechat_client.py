"""The WeChat access-token cache: one token for every caller until it must be refreshed, the cache
keeps working after a refresh (regression: a refreshed cache entry broke every later call), and the
cached token is stored sealed, never in plaintext."""

from __future__ import annotations

import json

import pytest

from miniprogram_stub.wechat_api import PATH_JSCODE2SESSION, PATH_STABLE_TOKEN, Fault
from server.services.wechat import WechatCallError


@pytest.mark.gen_test
async def test_access_token_is_cached_and_survives_a_refresh(ctx, wechat):
    state, _ = wechat
    first = await ctx.wechat.access_token()
    assert await ctx.wechat.access_token() == first
    assert state.calls[PATH_STABLE_TOKEN] == 1, "the second call is served from the cache"

    refreshed = await ctx.wechat.access_token(force_refresh=True)
    assert refreshed != first
    assert await ctx.wechat.access_token() == refreshed
    assert await ctx.wechat.access_token() == refreshed
    assert state.calls[PATH_STABLE_TOKEN] == 2
    assert state.check_access_token(refreshed) is None, "the cached token is the one WeChat accepts"


@pytest.mark.gen_test
async def test_expired_access_token_is_refreshed_once_and_retried(ctx, wechat):
    state, _ = wechat
    openid = state.issue_login_code("o-subscriber")["openid"]
    state.add_template("tmpl-1", ["thing1"])
    state.accept_subscriptions(openid, ["tmpl-1"])
    state.accept_subscriptions(openid, ["tmpl-1"])  # two acceptances: two messages
    await ctx.wechat.access_token()
    state.expire_access_tokens()  # WeChat now answers 40001 to the cached token
    message = {"touser": openid, "template_id": "tmpl-1", "data": {"thing1": {"value": "回访提醒"}}}
    result = await ctx.wechat.send_subscribe_message(message)
    assert result["errcode"] == 0
    assert len(state.messages) == 1
    # and the refreshed token is served from the cache afterwards
    await ctx.wechat.send_subscribe_message(message)
    assert state.calls[PATH_STABLE_TOKEN] == 2


@pytest.mark.gen_test
async def test_the_cached_access_token_is_sealed_in_the_database(ctx, wechat, raw_db):
    state, _ = wechat
    token = await ctx.wechat.access_token()
    [doc] = list(raw_db.wechat_tokens.find())
    dump = json.dumps(doc, default=str)
    assert token not in dump and "token" not in doc
    assert set(doc["sealed"]) == {"v", "n", "c"}
    assert await ctx.wechat.access_token() == token and state.calls[PATH_STABLE_TOKEN] == 1  # read back through the seal


@pytest.mark.gen_test
async def test_a_plaintext_entry_from_before_is_replaced_by_a_sealed_one(ctx, wechat, raw_db):
    state, _ = wechat
    real = await ctx.wechat.access_token()
    expires = raw_db.wechat_tokens.find_one()["expires_at"]
    raw_db.wechat_tokens.replace_one({}, {"_id": ctx.settings.wechat_appid, "token": "plain-old-token", "expires_at": expires})
    token = await ctx.wechat.access_token()
    assert token == real and token != "plain-old-token"  # WeChat's stable token, fetched again
    assert "token" not in raw_db.wechat_tokens.find_one() and state.calls[PATH_STABLE_TOKEN] == 2


@pytest.mark.gen_test
async def test_wechat_41008_is_a_bad_code_not_an_outage(ctx, wechat):
    state, _ = wechat
    state.add_fault(Fault(path=PATH_JSCODE2SESSION, errcode=41008))
    with pytest.raises(WechatCallError) as caught:
        await ctx.wechat.code2session("0a1b2c3d")
    assert (caught.value.status, caught.value.code, caught.value.errcode) == (401, "auth.wechat_code_invalid", 41008)
