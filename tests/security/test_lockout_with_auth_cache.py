"""Lock-out while each instance remembers what it verified (server/services/recent_users.py).

An instance keeps, for at most ``MPCRM_AUTH_CACHE_TTL_S`` (≤ 1 s), the user it last read for a
request, and the claims of the access tokens it verified. What must still hold:

- on the instance that made the change, a deactivated user, or one whose role or password changed,
  is refused at once, on every endpoint (the cache entry is dropped by the write);
- on another instance, such a user is refused within one second of the change;
- a verified token stays exactly that token: a tampered copy is refused, and an expired one is
  refused once it expires, however often it was accepted before;
- the cache cannot be set to outlive one second.
"""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest
from pydantic import ValidationError
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from config.settings import Settings
from conftest import Api
from leads_kit import LEADS, make_lead
from server.app import make_app
from server.context import build_context
from server.db import connect

ME = "/api/v1/me"
USERS = "/api/v1/users"


@pytest.fixture
def other_instance(io_loop, mongo_uri, settings, recorder, clock, db_name):
    """A second app process on the same database: its own client, services and caches."""
    database = connect(mongo_uri, settings, db_name=db_name, listeners=[recorder])
    ctx = build_context(settings, database, clock)
    sock, port = bind_unused_port()
    server = HTTPServer(make_app(ctx))
    server.add_sockets([sock])
    yield Api(f"http://127.0.0.1:{port}")
    server.stop()
    io_loop.run_sync(database.close)


async def read_twice(api, person, lead_id: str) -> None:
    """Two reads in a row: the second one is served from what the instance remembers."""
    for _ in range(2):
        r = await api.get(f"{LEADS}/{lead_id}", token=person.token)
        assert r.status == 200, r.body


async def hand_lead_away(api, admin, people, lead_id: str) -> None:
    """The lead goes to a colleague first: a user who still owns open leads is not deactivated
    (409 ``user.has_open_work``, docs/features.md "Hand-over"). Still a 401 for it afterwards."""
    colleague = await people.rep()
    r = await api.post(f"{LEADS}/{lead_id}/assign", json={"owner_id": colleague.id}, token=admin.token)
    assert r.status == 200, r.body


# ---------------------------------------------------------------- the instance that made the change
@pytest.mark.gen_test
@pytest.mark.parametrize("change", [{"active": False}, {"role": "manager"}, {"password": "a brand new password"}])
async def test_a_change_that_logs_out_is_felt_at_once_on_the_same_instance(api, people, change):
    admin = await people.admin()
    rep = await people.rep()
    lead = await make_lead(api, rep)
    await read_twice(api, rep, lead["id"])
    await hand_lead_away(api, admin, people, lead["id"])  # deactivating someone with open work is 409
    r = await api.patch(f"{USERS}/{rep.id}", json={**change, "version": rep.user["version"]}, token=admin.token)
    assert r.status == 200, r.body
    for path in (f"{LEADS}/{lead['id']}", LEADS, ME):
        refused = await api.get(path, token=rep.token)
        assert (refused.status, refused.error_code) == (401, "auth.invalid_token"), path


@pytest.mark.gen_test
async def test_a_customer_retired_by_a_staff_bind_is_refused_at_once(api, people, wechat):
    state, _ = wechat
    admin = await people.admin()
    rep = await people.rep()
    openid = "o-retired-by-bind-0001"
    customer = await people.customer(state, openid)
    for _ in range(2):
        assert (await api.get("/api/v1/public/my-submissions", token=customer.token)).status == 200
    code = (await api.post(f"{USERS}/{rep.id}/bind-code", token=admin.token)).json["code"]
    login_code = state.issue_login_code(openid)["code"]
    bound = await api.post("/api/v1/auth/wechat-login", json={"code": login_code, "bind_code": code})
    assert bound.status == 200 and bound.json["user"]["id"] == rep.id, bound.body
    refused = await api.get("/api/v1/public/my-submissions", token=customer.token)
    assert (refused.status, refused.error_code) == (401, "auth.invalid_token")


# ---------------------------------------------------------------- another instance
@pytest.mark.gen_test(timeout=30)
async def test_a_user_deactivated_on_one_instance_is_refused_by_another_within_a_second(api, other_instance, people, settings):
    admin = await people.admin()
    rep = await people.rep()
    lead = await make_lead(api, rep)
    await read_twice(other_instance, rep, lead["id"])
    await hand_lead_away(api, admin, people, lead["id"])
    r = await api.patch(f"{USERS}/{rep.id}", json={"active": False, "version": rep.user["version"]}, token=admin.token)
    assert r.status == 200, r.body
    deactivated_at = time.monotonic()
    assert settings.auth_cache_ttl_s <= 1.0
    await asyncio.sleep(max(0.0, deactivated_at + 1.0 - time.monotonic()))
    refused = await other_instance.get(f"{LEADS}/{lead['id']}", token=rep.token)
    assert (refused.status, refused.error_code) == (401, "auth.invalid_token")
    assert (await other_instance.get(ME, token=rep.token)).status == 401


@pytest.mark.gen_test
async def test_me_on_another_instance_shows_the_user_as_stored_now(api, other_instance, people):
    admin = await people.admin()
    rep = await people.rep()
    lead = await make_lead(api, rep)
    await read_twice(other_instance, rep, lead["id"])
    r = await api.patch(f"{USERS}/{rep.id}", json={"name": "新名字", "version": rep.user["version"]}, token=admin.token)
    assert r.status == 200, r.body
    me = await other_instance.get(ME, token=rep.token)
    assert me.status == 200 and me.json["name"] == "新名字", me.body


# ---------------------------------------------------------------- verified tokens
@pytest.mark.gen_test
async def test_a_tampered_copy_of_an_accepted_token_is_refused(api, people):
    rep = await people.rep()
    assert (await api.get(ME, token=rep.token)).status == 200
    head, payload, signature = rep.token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    for forged in (f"{head}.{payload}.{flipped}", f"{head}.{payload}x.{signature}", rep.token + "x"):
        resp = await api.get(ME, token=forged)
        assert (resp.status, resp.error_code) == (401, "auth.invalid_token"), forged


@pytest.mark.gen_test(timeout=30)
async def test_an_accepted_token_is_refused_once_it_expires(api, people, ctx):
    rep = await people.rep()
    lead = await make_lead(api, rep)
    s = ctx.settings
    now = int(time.time())
    # Expired 4 s ago: still inside the 5 s leeway, so accepted for about one more second.
    token = jwt.encode(
        {"iss": s.jwt_issuer, "aud": s.jwt_audience, "sub": rep.id, "typ": "access", "role": "rep", "tv": 1,
         "tid": rep.team_id, "iat": now - 600, "nbf": now - 605, "exp": now - 4, "jti": "expiring-token"},
        s.jwt_secret.get_secret_value(), algorithm="HS256", headers={"kid": s.jwt_kid},
    )
    accepted = await api.get(f"{LEADS}/{lead['id']}", token=token)
    assert accepted.status == 200, accepted.body
    await asyncio.sleep(max(0.0, now - 4 + 5 + 1.1 - time.time()))
    for path in (f"{LEADS}/{lead['id']}", ME):
        refused = await api.get(path, token=token)
        assert (refused.status, refused.error_code) == (401, "auth.invalid_token"), path


# ---------------------------------------------------------------- the bound
def test_the_cache_cannot_outlive_one_second():
    assert Settings(env="test").auth_cache_ttl_s == 1.0
    assert Settings(env="test", auth_cache_ttl_s=0).auth_cache_ttl_s == 0
    with pytest.raises(ValidationError):
        Settings(env="test", auth_cache_ttl_s=1.5)
