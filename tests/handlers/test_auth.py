"""Auth over real HTTP: password and WeChat logins, token rotation and revocation, token forgery,
WeChat failures, staff binding, and secrets that must never leave the server."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import datetime, timezone

import jwt
import pytest

from miniprogram_stub.wechat_api import PATH_JSCODE2SESSION, Fault
from server.clock import FixedClock

PASSWORD = "correct horse battery"  # tests/conftest.py PASSWORD
LOGIN = "/api/v1/auth/password-login"
WX_LOGIN = "/api/v1/auth/wechat-login"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/me"

USER_OUT_FIELDS = {
    "id", "username", "name", "role", "team_id", "tags", "capacity", "finance", "service", "active", "open_leads",
    "wechat_bound", "version", "created_at", "updated_at",
}
INTERNAL_WORDS = ("password_hash", "wechat_session", "openid", "session_key", "token_version", '"_id"', "argon2")


def assert_no_internals(resp) -> None:
    text = resp.body.decode()
    for word in INTERNAL_WORDS:
        assert word not in text, f"{word!r} leaked in {text}"


def assert_token_pair(resp) -> dict:
    assert resp.status == 200, resp.body
    body = resp.json
    assert body["access_token"].count(".") == 2
    assert body["refresh_token"] and body["refresh_token"] != body["access_token"]
    assert body["expires_in"] > 0
    assert set(body["user"]) <= USER_OUT_FIELDS, set(body["user"]) - USER_OUT_FIELDS
    assert_no_internals(resp)
    return body


async def wx_login(api, state, openid: str, **extra):
    code = state.issue_login_code(openid)["code"]
    return await api.post(WX_LOGIN, json={"code": code, **extra})


def new_openid() -> str:
    return "o" + uuid.uuid4().hex[:27]


# ---------------------------------------------------------------- password login
@pytest.mark.gen_test
async def test_password_login_returns_tokens_and_user(api, people):
    rep = await people.rep(username="li.lei")
    resp = await api.post(LOGIN, json={"username": "li.lei", "password": PASSWORD})
    body = assert_token_pair(resp)
    assert body["user"]["id"] == rep.id
    assert body["user"]["username"] == "li.lei"
    assert body["user"]["role"] == "rep"
    me = await api.get(ME, token=body["access_token"])
    assert me.status == 200 and me.json["id"] == rep.id
    assert_no_internals(me)


@pytest.mark.gen_test
async def test_wrong_password_and_unknown_user_get_the_same_401(api, people):
    await people.rep(username="han.mei")
    wrong = await api.post(LOGIN, json={"username": "han.mei", "password": "not the password"})
    unknown = await api.post(LOGIN, json={"username": "nobody.here", "password": PASSWORD})
    assert (wrong.status, wrong.error_code) == (401, "auth.invalid_credentials")
    assert (unknown.status, unknown.error_code) == (401, "auth.invalid_credentials")
    assert wrong.json["error"]["message"] == unknown.json["error"]["message"]


@pytest.mark.gen_test
async def test_customer_cannot_password_login(api, people, raw_db):
    person = await people.rep(username="zhao.kehu")
    ok = await api.post(LOGIN, json={"username": "zhao.kehu", "password": PASSWORD})
    assert ok.status == 200
    # The only way a customer account could carry a password: it is demoted behind the API's back.
    raw_db.users.update_one({"_id": person.user["_id"]}, {"$set": {"role": "customer", "team_id": None}})
    resp = await api.post(LOGIN, json={"username": "zhao.kehu", "password": PASSWORD})
    assert (resp.status, resp.error_code) == (401, "auth.invalid_credentials")


@pytest.mark.gen_test
async def test_inactive_staff_cannot_password_login(api, people):
    admin = await people.admin()
    rep = await people.rep(username="left.company")
    r = await api.patch(f"/api/v1/users/{rep.id}", json={"active": False, "version": 1}, token=admin.token)
    assert r.status == 200, r.body
    resp = await api.post(LOGIN, json={"username": "left.company", "password": PASSWORD})
    assert (resp.status, resp.error_code) == (401, "auth.invalid_credentials")


@pytest.mark.gen_test
async def test_login_and_me_db_budget(api, people, recorder):
    await people.rep(username="budget.rep")
    with recorder.counting() as cmds:
        resp = await api.post(LOGIN, json={"username": "budget.rep", "password": PASSWORD})
    assert resp.status == 200
    assert len(cmds) <= 4, cmds
    with recorder.counting() as cmds:
        me = await api.get(ME, token=resp.json["access_token"])
    assert me.status == 200
    assert len(cmds) <= 1, cmds


# ---------------------------------------------------------------- refresh, reuse, logout
@pytest.mark.gen_test
async def test_refresh_rotates_and_old_token_dies(api, people):
    rep = await people.rep()
    first = await api.post(REFRESH, json={"refresh_token": rep.refresh_token})
    pair = assert_token_pair(first)
    assert pair["refresh_token"] != rep.refresh_token
    assert pair["user"]["id"] == rep.id
    assert (await api.get(ME, token=pair["access_token"])).status == 200
    again = await api.post(REFRESH, json={"refresh_token": rep.refresh_token})
    assert again.status == 401


@pytest.mark.gen_test
async def test_reusing_spent_refresh_token_revokes_the_family(api, people):
    rep = await people.rep()
    r1 = rep.refresh_token
    r2 = (await api.post(REFRESH, json={"refresh_token": r1})).json["refresh_token"]
    # another, independent session of the same user must survive
    other = await people.login(rep.user)

    reused = await api.post(REFRESH, json={"refresh_token": r1})
    assert (reused.status, reused.error_code) == (401, "auth.refresh_token_reused")
    newer = await api.post(REFRESH, json={"refresh_token": r2})
    assert newer.status == 401, "the newer token of a replayed family must be revoked too"
    independent = await api.post(REFRESH, json={"refresh_token": other.refresh_token})
    assert independent.status == 200, independent.body


@pytest.mark.gen_test
async def test_unknown_refresh_token(api):
    resp = await api.post(REFRESH, json={"refresh_token": "rt_" + "x" * 43})
    assert (resp.status, resp.error_code) == (401, "auth.invalid_refresh_token")


@pytest.mark.gen_test
async def test_logout_revokes_refresh_token(api, people):
    rep = await people.rep()
    out = await api.post(LOGOUT, json={"refresh_token": rep.refresh_token}, token=rep.token)
    assert out.status == 204, out.body
    resp = await api.post(REFRESH, json={"refresh_token": rep.refresh_token})
    assert resp.status == 401


@pytest.mark.gen_test
async def test_logout_cannot_revoke_someone_elses_session(api, people):
    rep = await people.rep()
    other = await people.rep()
    out = await api.post(LOGOUT, json={"refresh_token": rep.refresh_token}, token=other.token)
    assert out.status == 204
    assert (await api.post(REFRESH, json={"refresh_token": rep.refresh_token})).status == 200


@pytest.mark.gen_test
async def test_deactivation_locks_user_out_at_once(api, people):
    admin = await people.admin()
    rep = await people.rep()
    assert (await api.get(ME, token=rep.token)).status == 200
    r = await api.patch(f"/api/v1/users/{rep.id}", json={"active": False, "version": 1}, token=admin.token)
    assert r.status == 200, r.body
    me = await api.get(ME, token=rep.token)
    assert (me.status, me.error_code) == (401, "auth.invalid_token")
    assert (await api.post(REFRESH, json={"refresh_token": rep.refresh_token})).status == 401


@pytest.mark.gen_test
async def test_role_change_locks_user_out_at_once(api, people):
    admin = await people.admin()
    rep = await people.rep()
    assert (await api.get(ME, token=rep.token)).status == 200
    r = await api.patch(f"/api/v1/users/{rep.id}", json={"role": "manager"}, headers={"If-Match": "1"}, token=admin.token)
    assert r.status == 200 and r.json["role"] == "manager", r.body
    me = await api.get(ME, token=rep.token)
    assert (me.status, me.error_code) == (401, "auth.invalid_token")
    assert (await api.post(REFRESH, json={"refresh_token": rep.refresh_token})).status == 401
    # a fresh login carries the new role
    relog = await api.post(LOGIN, json={"username": rep.user["username"], "password": PASSWORD})
    assert relog.status == 200 and relog.json["user"]["role"] == "manager"


# ---------------------------------------------------------------- forged and broken tokens
def craft(ctx, user: dict, *, key: str | None = None, kid: str | None = None, drop: tuple = (), headers: dict | None = None, **claims) -> str:
    s = ctx.settings
    now = int(time.time())
    payload = {
        "iss": s.jwt_issuer, "aud": s.jwt_audience, "sub": str(user["_id"]), "typ": "access",
        "role": user["role"], "tv": user.get("token_version", 1), "iat": now, "nbf": now - 5,
        "exp": now + 600, "jti": uuid.uuid4().hex,
    }
    payload.update(claims)
    for name in drop:
        payload.pop(name, None)
    hdrs = {"kid": kid or s.jwt_kid, **(headers or {})}
    return jwt.encode(payload, key or s.jwt_secret.get_secret_value(), algorithm="HS256", headers=hdrs)


@pytest.mark.gen_test
async def test_crafted_valid_token_is_accepted(api, people, ctx):
    """The control for the forgery tests below: the crafting itself produces a good token."""
    rep = await people.rep()
    resp = await api.get(ME, token=craft(ctx, rep.user))
    assert resp.status == 200, resp.body


@pytest.mark.gen_test
async def test_missing_token(api):
    resp = await api.get(ME)
    assert (resp.status, resp.error_code) == (401, "auth.required")


@pytest.mark.gen_test
async def test_bad_tokens_are_401_invalid_token(api, people, ctx):
    rep = await people.rep()
    user = rep.user
    now = int(time.time())
    secret = ctx.settings.jwt_secret.get_secret_value()
    good_claims = jwt.decode(craft(ctx, user), options={"verify_signature": False})
    cases = {
        "garbled": "not-a-jwt",
        "garbled segments": "eyJhbGciOiJIUzI1NiJ9.@@@.###",
        "truncated signature": craft(ctx, user)[:-6],
        "expired": craft(ctx, user, iat=now - 3600, nbf=now - 3600, exp=now - 600),
        "alg none": jwt.encode(good_claims, None, algorithm="none", headers={"kid": ctx.settings.jwt_kid}),
        "alg none, no signature, HS256 header": craft(ctx, user).rsplit(".", 1)[0] + ".",
        "wrong key": craft(ctx, user, key="another-secret-that-is-long-enough-000000"),
        "wrong aud": craft(ctx, user, aud="someone-else"),
        "wrong iss": craft(ctx, user, iss="evil"),
        "missing exp": craft(ctx, user, drop=("exp",)),
        "unknown kid": craft(ctx, user, kid="k-unknown"),
        "typ refresh": craft(ctx, user, typ="refresh"),
        "no typ": craft(ctx, user, drop=("typ",)),
        "stale token version": craft(ctx, user, tv=user.get("token_version", 1) + 1),
        "other role claimed": craft(ctx, user, role="admin"),
        "unknown user": craft(ctx, user, sub="0" * 24),
        "opaque refresh token": rep.refresh_token,
        "issued in the future": craft(ctx, user, iat=now + 3600, nbf=now + 3600, exp=now + 4000),
    }
    assert secret  # the crafted tokens are signed with the real key unless said otherwise
    failures = []
    for name, token in cases.items():
        resp = await api.get(ME, token=token)
        if (resp.status, resp.error_code) != (401, "auth.invalid_token"):
            failures.append(f"{name}: {resp.status} {resp.body[:200]!r}")
    assert not failures, "\n".join(failures)


@pytest.mark.gen_test
async def test_non_bearer_authorization_header(api, people):
    rep = await people.rep()
    resp = await api.get(ME, headers={"Authorization": f"Basic {rep.token}"})
    assert (resp.status, resp.error_code) == (401, "auth.invalid_token")


OLD_JWT_SECRET = "the-previous-jwt-secret-0123456789abcdef"


class TestSigningKeyRotation:
    """Keys carry a kid looked up in a fixed server-side map: after a rotation, tokens signed with
    the old key still verify under their own kid, and under no other."""

    @pytest.fixture
    def settings_overrides(self):
        return {"jwt_kid": "k2", "jwt_secret": "the-current-jwt-secret-0123456789abcdef", "jwt_old_keys": {"k1": OLD_JWT_SECRET}}

    @pytest.mark.gen_test
    async def test_old_key_verifies_only_under_its_kid(self, api, people, ctx):
        rep = await people.rep()
        issued = jwt.get_unverified_header(rep.token)
        assert issued["kid"] == "k2"
        assert (await api.get(ME, token=rep.token)).status == 200
        assert (await api.get(ME, token=craft(ctx, rep.user, kid="k1", key=OLD_JWT_SECRET))).status == 200
        assert (await api.get(ME, token=craft(ctx, rep.user, kid="k2", key=OLD_JWT_SECRET))).status == 401
        assert (await api.get(ME, token=craft(ctx, rep.user, kid="k3", key=OLD_JWT_SECRET))).status == 401


# ---------------------------------------------------------------- WeChat login
@pytest.mark.gen_test
async def test_wechat_login_creates_customer_once(api, wechat, raw_db):
    state, _ = wechat
    openid = new_openid()
    first = await wx_login(api, state, openid)
    body = assert_token_pair(first)
    assert body["user"]["role"] == "customer"
    assert openid not in first.body.decode()
    second = await wx_login(api, state, openid)
    assert second.status == 200
    assert second.json["user"]["id"] == body["user"]["id"]
    assert raw_db.users.count_documents({"openid": openid}) == 1
    me = await api.get(ME, token=second.json["access_token"])
    assert me.status == 200 and me.json["role"] == "customer"


@pytest.mark.gen_test
async def test_wechat_login_code_is_single_use(api, wechat):
    state, _ = wechat
    code = state.issue_login_code(new_openid())["code"]
    assert (await api.post(WX_LOGIN, json={"code": code})).status == 200
    again = await api.post(WX_LOGIN, json={"code": code})
    assert (again.status, again.error_code) == (401, "auth.wechat_code_invalid")


@pytest.mark.gen_test
async def test_concurrent_wechat_logins_make_one_user(api, wechat, raw_db):
    state, _ = wechat
    openid = new_openid()
    codes = [state.issue_login_code(openid)["code"] for _ in range(5)]
    results = await asyncio.gather(*(api.post(WX_LOGIN, json={"code": c}) for c in codes))
    assert [r.status for r in results] == [200] * 5, [r.body for r in results]
    assert len({r.json["user"]["id"] for r in results}) == 1
    assert raw_db.users.count_documents({"openid": openid}) == 1
    assert raw_db.users.count_documents({}) == 1


@pytest.mark.gen_test
async def test_openid_in_body_is_refused(api, wechat, raw_db):
    state, _ = wechat
    victim = new_openid()
    code = state.issue_login_code(new_openid())["code"]
    resp = await api.post(WX_LOGIN, json={"code": code, "openid": victim})
    assert (resp.status, resp.error_code) == (422, "request.invalid")
    assert any(d["field"] == "openid" for d in resp.json["error"]["details"]), resp.json
    assert raw_db.users.count_documents({}) == 0


FAULTS = [
    pytest.param(dict(errcode=40029), 401, "auth.wechat_code_invalid", id="40029-invalid-code"),
    pytest.param(dict(errcode=40163), 401, "auth.wechat_code_invalid", id="40163-code-used"),
    pytest.param(dict(errcode=45011), 503, "wechat.rate_limited", id="45011-rate-limit"),
    pytest.param(dict(errcode=40226), 401, "auth.wechat_user_blocked", id="40226-risky-user"),
    pytest.param(dict(errcode=-1), 503, "wechat.unavailable", id="busy"),
    pytest.param(dict(errcode=40125), 503, "wechat.unavailable", id="40125-our-secret-wrong"),
    pytest.param(dict(malformed=True), 503, "wechat.unavailable", id="malformed-json"),
    pytest.param(dict(status=502), 503, "wechat.unavailable", id="http-502"),
]


@pytest.mark.gen_test
@pytest.mark.parametrize("fault, status, code", FAULTS)
async def test_wechat_failures_are_clean_and_create_nothing(api, wechat, raw_db, fault, status, code):
    state, _ = wechat
    openid = new_openid()
    state.add_fault(Fault(path=PATH_JSCODE2SESSION, **fault))
    resp = await wx_login(api, state, openid)
    assert (resp.status, resp.error_code) == (status, code), resp.body
    assert state.calls.get(PATH_JSCODE2SESSION) == 1
    assert raw_db.users.count_documents({}) == 0
    if fault.get("errcode") == 45011:
        assert resp.headers.get("Retry-After")


@pytest.mark.gen_test
async def test_wechat_answer_without_session_key_is_503(api, wechat, raw_db):
    """A 200 answer that lacks openid/session_key: shaped right, content wrong."""
    state, _ = wechat
    state.add_fault(Fault(path=PATH_JSCODE2SESSION, errcode=0, errmsg="ok"))
    resp = await wx_login(api, state, new_openid())
    assert (resp.status, resp.error_code) == (503, "wechat.unavailable"), resp.body
    assert raw_db.users.count_documents({}) == 0


@pytest.mark.gen_test
async def test_wechat_unreachable_is_503(api, ctx, raw_db, settings):
    # Nothing listens on the port of a socket we bind and close.
    from server.embedded import free_port
    from server.services.wechat import WechatClient

    ctx.auth._wechat = WechatClient(settings.model_copy(update={"wechat_api_base": f"http://127.0.0.1:{free_port()}"}), ctx.database.collection("wechat_tokens"), ctx.clock)
    resp = await api.post(WX_LOGIN, json={"code": "whatever"})
    assert (resp.status, resp.error_code) == (503, "wechat.unavailable"), resp.body
    assert raw_db.users.count_documents({}) == 0


class TestSlowWechat:
    @pytest.fixture
    def settings_overrides(self):
        return {"wechat_timeout_s": 0.5}

    @pytest.mark.gen_test
    async def test_slow_wechat_is_503_not_a_hang(self, api, wechat, raw_db):
        state, _ = wechat
        state.add_fault(Fault(path=PATH_JSCODE2SESSION, delay=1.5))
        started = time.monotonic()
        resp = await wx_login(api, state, new_openid())
        elapsed = time.monotonic() - started
        assert (resp.status, resp.error_code) == (503, "wechat.unavailable"), resp.body
        assert elapsed < 1.4, elapsed
        assert raw_db.users.count_documents({}) == 0
        # WeChat is fine again: the next login works (and lets the stub's slow call finish).
        ok = await wx_login(api, state, new_openid())
        assert ok.status == 200
        await asyncio.sleep(max(0.0, 1.6 - (time.monotonic() - started)))


# ---------------------------------------------------------------- staff binding
async def bind_code_for(api, admin, user_id: str) -> str:
    resp = await api.post(f"/api/v1/users/{user_id}/bind-code", token=admin.token)
    assert resp.status == 201, resp.body
    assert resp.json["code"] and resp.json["expires_at"]
    return resp.json["code"]


@pytest.mark.gen_test
async def test_staff_binds_wechat_with_bind_code(api, people, wechat, raw_db):
    state, _ = wechat
    admin = await people.admin()
    rep = await people.rep()
    code = await bind_code_for(api, admin, rep.id)
    openid = new_openid()
    bound = await wx_login(api, state, openid, bind_code=code)
    body = assert_token_pair(bound)
    assert body["user"]["id"] == rep.id and body["user"]["role"] == "rep"
    assert body["user"]["wechat_bound"] is True
    # later: a plain wx.login code is enough
    later = await wx_login(api, state, openid)
    assert later.status == 200 and later.json["user"]["id"] == rep.id
    assert raw_db.users.count_documents({"openid": openid}) == 1
    assert (await api.get(ME, token=later.json["access_token"])).json["role"] == "rep"


@pytest.mark.gen_test
async def test_bind_code_is_single_use(api, people, wechat):
    state, _ = wechat
    admin = await people.admin()
    rep = await people.rep()
    code = await bind_code_for(api, admin, rep.id)
    assert (await wx_login(api, state, new_openid(), bind_code=code)).status == 200
    again = await wx_login(api, state, new_openid(), bind_code=code)
    assert (again.status, again.error_code) == (401, "auth.bind_code_invalid")


@pytest.mark.gen_test
async def test_unknown_bind_code(api, wechat, raw_db):
    state, _ = wechat
    resp = await wx_login(api, state, new_openid(), bind_code="ABCDEFGHJK")
    assert (resp.status, resp.error_code) == (401, "auth.bind_code_invalid")
    assert raw_db.users.count_documents({}) == 0


@pytest.mark.gen_test
async def test_new_bind_code_replaces_the_old_one(api, people, wechat):
    state, _ = wechat
    admin = await people.admin()
    rep = await people.rep()
    old = await bind_code_for(api, admin, rep.id)
    new = await bind_code_for(api, admin, rep.id)
    assert (await wx_login(api, state, new_openid(), bind_code=old)).error_code == "auth.bind_code_invalid"
    assert (await wx_login(api, state, new_openid(), bind_code=new)).status == 200


class TestBindCodeExpiry:
    @pytest.fixture
    def clock(self):
        return FixedClock(datetime.now(timezone.utc))

    @pytest.fixture
    def settings_overrides(self):
        return {"bind_code_ttl_s": 60}

    @pytest.mark.gen_test
    async def test_expired_bind_code_is_refused(self, api, people, wechat, clock, raw_db):
        state, _ = wechat
        admin = await people.admin()
        rep = await people.rep()
        code = await bind_code_for(api, admin, rep.id)
        clock.advance(seconds=61)
        resp = await wx_login(api, state, new_openid(), bind_code=code)
        assert (resp.status, resp.error_code) == (401, "auth.bind_code_invalid")
        assert raw_db.users.find_one({"_id": rep.user["_id"]}).get("openid") is None
        # a code still inside its lifetime works
        fresh = await bind_code_for(api, admin, rep.id)
        clock.advance(seconds=59)
        ok = await wx_login(api, state, new_openid(), bind_code=fresh)
        assert ok.status == 200 and ok.json["user"]["id"] == rep.id


@pytest.mark.gen_test
async def test_openid_bound_to_other_staff_is_409(api, people, wechat, raw_db):
    state, _ = wechat
    admin = await people.admin()
    rep1 = await people.rep()
    rep2 = await people.rep()
    openid = new_openid()
    assert (await wx_login(api, state, openid, bind_code=await bind_code_for(api, admin, rep1.id))).status == 200
    resp = await wx_login(api, state, openid, bind_code=await bind_code_for(api, admin, rep2.id))
    assert (resp.status, resp.error_code) == (409, "auth.openid_bound")
    assert raw_db.users.find_one({"_id": rep1.user["_id"]})["openid"] == openid
    assert raw_db.users.find_one({"_id": rep2.user["_id"]}).get("openid") is None
    plain = await wx_login(api, state, openid)
    assert plain.json["user"]["id"] == rep1.id


@pytest.mark.gen_test
async def test_customer_who_binds_moves_to_the_staff_account(api, people, wechat, raw_db):
    state, _ = wechat
    admin = await people.admin()
    rep = await people.rep()
    openid = new_openid()
    as_customer = await wx_login(api, state, openid)
    assert as_customer.status == 200
    customer_id = as_customer.json["user"]["id"]
    customer_token = as_customer.json["access_token"]
    assert customer_id != rep.id

    bound = await wx_login(api, state, openid, bind_code=await bind_code_for(api, admin, rep.id))
    assert bound.status == 200 and bound.json["user"]["id"] == rep.id, bound.body

    staff_doc = raw_db.users.find_one({"_id": rep.user["_id"]})
    assert staff_doc["openid"] == openid
    retired = raw_db.users.find_one({"role": "customer"})
    assert str(retired["_id"]) == customer_id
    # nx-27017 reads back a $set boolean as 0/1 (real MongoDB keeps the bool); the value is what counts.
    assert "active" in retired and not retired["active"] and "openid" not in retired
    assert raw_db.users.count_documents({"openid": openid}) == 1
    assert (await api.get(ME, token=customer_token)).status == 401
    assert (await api.post(REFRESH, json={"refresh_token": as_customer.json["refresh_token"]})).status == 401
    later = await wx_login(api, state, openid)
    assert later.json["user"]["id"] == rep.id


@pytest.mark.gen_test
async def test_bind_code_for_customer_or_unknown_user_is_404(api, people, wechat):
    state, _ = wechat
    admin = await people.admin()
    customer = await people.customer(state)
    assert (await api.post(f"/api/v1/users/{customer.id}/bind-code", token=admin.token)).status == 404
    assert (await api.post(f"/api/v1/users/{'0' * 24}/bind-code", token=admin.token)).status == 404


# ---------------------------------------------------------------- secrets stay inside
@pytest.mark.gen_test
async def test_session_key_and_secret_never_leave_the_server(api, people, wechat, ctx, raw_db, captured_logs):
    state, _ = wechat
    secret = ctx.settings.wechat_secret.get_secret_value()
    admin = await people.admin()
    rep = await people.rep()
    session_keys: list[str] = []
    bodies: list[str] = []

    def remember_session_key(user_id: str) -> None:
        doc = raw_db.users.find_one({"_id": __import__("bson").ObjectId(user_id)})
        sealed = doc["wechat_session"]
        assert "session_key" not in json.dumps(sealed, default=str)
        session_keys.append(ctx.cipher.decrypt(sealed, user_id))

    openid = new_openid()
    for _ in range(2):
        resp = await wx_login(api, state, openid)
        assert resp.status == 200
        bodies.append(resp.body.decode())
        remember_session_key(resp.json["user"]["id"])
    bound = await wx_login(api, state, new_openid(), bind_code=await bind_code_for(api, admin, rep.id))
    assert bound.status == 200
    bodies.append(bound.body.decode())
    remember_session_key(rep.id)
    me = await api.get(ME, token=bound.json["access_token"])
    bodies.append(me.body.decode())
    # failures too: WeChat errors, garbage, timeouts of the HTTP layer
    for fault in (Fault(path=PATH_JSCODE2SESSION, errcode=-1), Fault(path=PATH_JSCODE2SESSION, malformed=True),
                  Fault(path=PATH_JSCODE2SESSION, status=500), Fault(path=PATH_JSCODE2SESSION, errcode=40029)):
        state.add_fault(fault)
        failed = await wx_login(api, state, new_openid())
        assert failed.status in (401, 503)
        bodies.append(failed.body.decode())

    assert len(set(session_keys)) == 3 and all(session_keys)
    lines = captured_logs()
    assert lines, "expected the app to log its requests"
    for needle in [secret, *session_keys]:
        for body in bodies:
            assert needle not in body
        leaked = [line for line in lines if needle in line]
        assert not leaked, leaked


@pytest.mark.gen_test
async def test_refresh_after_logout_is_invalid_not_a_replay(api, people, raw_db):
    rep = await people.rep()
    r = await api.post("/api/v1/auth/logout", json={"refresh_token": rep.refresh_token}, token=rep.token)
    assert r.status == 204, r.body
    r = await api.post("/api/v1/auth/refresh", json={"refresh_token": rep.refresh_token})
    assert r.status == 401 and r.error_code == "auth.invalid_refresh_token", r.body
    assert raw_db.audit_log.count_documents({"action": "auth.refresh_reuse"}) == 0
