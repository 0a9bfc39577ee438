"""The WeChat access-token cache: one token for every caller until it must be refreshed, and the
cache keeps working after a refresh (regression: a refreshed cache entry broke every later call)."""

from __future__ import annotations

import pytest

from miniprogram_stub.wechat_api import PATH_STABLE_TOKEN


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
    await ctx.wechat.access_token()
    state.expire_access_tokens()  # WeChat now answers 40001 to the cached token
    message = {"touser": openid, "template_id": "tmpl-1", "data": {"thing1": {"value": "回访提醒"}}}
    result = await ctx.wechat.send_subscribe_message(message)
    assert result["errcode"] == 0
    assert len(state.messages) == 1
    # and the refreshed token is served from the cache afterwards
    await ctx.wechat.send_subscribe_message(message)
    assert state.calls[PATH_STABLE_TOKEN] == 2
