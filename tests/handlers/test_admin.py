"""Administration over real HTTP: users and teams, versions, unknown fields, manager scope,
role checks on every route and method, and pagination."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from urllib.parse import quote

import pytest
from bson import ObjectId

from server.app import API_ROUTES
from server.openapi import METHODS, openapi_path, route_operations

USERS = "/api/v1/users"
TEAMS = "/api/v1/teams"


def new_user(team_id: str | None, role: str = "rep", username: str = "wang.wu", **extra) -> dict:
    return {"username": username, "password": "long-password-1", "name": "王五", "role": role, "team_id": team_id, **extra}


# ---------------------------------------------------------------- create
@pytest.mark.gen_test
async def test_admin_creates_team_and_users(api, people, raw_db):
    admin = await people.admin()
    team = await api.post(TEAMS, json={"name": "华南销售部", "description": "广州、深圳"}, token=admin.token)
    assert team.status == 201, team.body
    assert team.json["name"] == "华南销售部" and team.json["active"] is True and team.json["version"] == 1
    assert re.fullmatch(r"[0-9a-f]{24}", team.json["id"])
    team_id = team.json["id"]

    rep = await api.post(USERS, json=new_user(team_id, tags=["大客户", "华南", "大客户"], capacity=50), token=admin.token)
    assert rep.status == 201, rep.body
    body = rep.json
    assert body["username"] == "wang.wu" and body["role"] == "rep" and body["team_id"] == team_id
    assert body["tags"] == sorted({"大客户", "华南"}) and body["capacity"] == 50
    assert body["active"] is True and body["version"] == 1 and body["wechat_bound"] is False
    assert body["created_at"].endswith("+00:00")
    for internal in ("password", "password_hash", "token_version", "created_by", "_id"):
        assert internal not in body
    stored = raw_db.users.find_one({"_id": ObjectId(body["id"])})
    assert stored["password_hash"].startswith("$argon2id$") and "long-password-1" not in str(stored)

    manager = await api.post(USERS, json=new_user(team_id, "manager", "zhou.jingli"), token=admin.token)
    other_admin = await api.post(USERS, json=new_user(None, "admin", "ops.admin"), token=admin.token)
    assert manager.status == 201 and other_admin.status == 201
    # the new user can log in with the password the admin set
    login = await api.post("/api/v1/auth/password-login", json={"username": "wang.wu", "password": "long-password-1"})
    assert login.status == 200 and login.json["user"]["id"] == body["id"]
    got = await api.get(f"{USERS}/{body['id']}", token=admin.token)
    assert got.status == 200 and got.json == body


@pytest.mark.gen_test
async def test_duplicate_username_is_409(api, people, raw_db):
    admin = await people.admin()
    team_id = await people.team()
    assert (await api.post(USERS, json=new_user(team_id), token=admin.token)).status == 201
    again = await api.post(USERS, json=new_user(team_id, name="另一个"), token=admin.token)
    assert (again.status, again.error_code) == (409, "user.username_taken")
    assert raw_db.users.count_documents({"username": "wang.wu"}) == 1


@pytest.mark.gen_test
async def test_duplicate_team_name_is_409(api, people):
    admin = await people.admin()
    assert (await api.post(TEAMS, json={"name": "华东"}, token=admin.token)).status == 201
    again = await api.post(TEAMS, json={"name": "华东"}, token=admin.token)
    assert (again.status, again.error_code) == (409, "team.name_taken")


@pytest.mark.gen_test
@pytest.mark.parametrize("role", ["rep", "manager"])
async def test_rep_or_manager_without_team_is_422(api, people, raw_db, role):
    admin = await people.admin()
    resp = await api.post(USERS, json=new_user(None, role), token=admin.token)
    assert (resp.status, resp.error_code) == (422, "user.team_required")
    assert raw_db.users.count_documents({"username": "wang.wu"}) == 0


@pytest.mark.gen_test
async def test_unknown_team_is_422(api, people, raw_db):
    admin = await people.admin()
    resp = await api.post(USERS, json=new_user(str(ObjectId())), token=admin.token)
    assert resp.status == 422, resp.body
    assert any(d["field"] == "team_id" for d in resp.json["error"]["details"])
    assert raw_db.users.count_documents({"username": "wang.wu"}) == 0
    malformed = await api.post(USERS, json=new_user("not-an-id"), token=admin.token)
    assert malformed.status == 422


@pytest.mark.gen_test
async def test_customer_role_cannot_be_created(api, people):
    admin = await people.admin()
    resp = await api.post(USERS, json=new_user(None, "customer"), token=admin.token)
    assert resp.status == 422


# ---------------------------------------------------------------- update with versions
@pytest.mark.gen_test
async def test_patch_with_version_in_body_and_if_match(api, people):
    admin = await people.admin()
    rep = await people.rep()
    first = await api.patch(f"{USERS}/{rep.id}", json={"name": "李雷雷", "version": 1}, token=admin.token)
    assert first.status == 200, first.body
    assert first.json["name"] == "李雷雷" and first.json["version"] == 2
    second = await api.patch(f"{USERS}/{rep.id}", json={"capacity": 10}, headers={"If-Match": '"2"'}, token=admin.token)
    assert second.status == 200, second.body
    assert second.json["capacity"] == 10 and second.json["version"] == 3 and second.json["name"] == "李雷雷"
    got = await api.get(f"{USERS}/{rep.id}", token=admin.token)
    assert got.json["version"] == 3
    # timestamps keep their UTC offset after an update, and move forward
    for body in (first.json, second.json, got.json):
        for key in ("created_at", "updated_at"):
            assert datetime.fromisoformat(body[key]).utcoffset() == timedelta(0), (key, body[key])
    assert datetime.fromisoformat(got.json["updated_at"]) >= datetime.fromisoformat(got.json["created_at"])
    assert got.json["created_at"] == first.json["created_at"]


@pytest.mark.gen_test
async def test_stale_version_is_412_and_changes_nothing(api, people, raw_db):
    admin = await people.admin()
    rep = await people.rep()
    assert (await api.patch(f"{USERS}/{rep.id}", json={"name": "first", "version": 1}, token=admin.token)).status == 200
    stale = await api.patch(f"{USERS}/{rep.id}", json={"name": "second", "version": 1}, token=admin.token)
    assert (stale.status, stale.error_code) == (412, "user.version_mismatch")
    stale_header = await api.patch(f"{USERS}/{rep.id}", json={"name": "third"}, headers={"If-Match": "1"}, token=admin.token)
    assert (stale_header.status, stale_header.error_code) == (412, "user.version_mismatch")
    doc = raw_db.users.find_one({"_id": rep.user["_id"]})
    assert doc["name"] == "first" and doc["version"] == 2


@pytest.mark.gen_test
async def test_missing_version_is_422(api, people, raw_db):
    admin = await people.admin()
    rep = await people.rep()
    for headers in ({}, {"If-Match": "*"}, {"If-Match": "abc"}, {"If-Match": "0"}):
        resp = await api.patch(f"{USERS}/{rep.id}", json={"name": "nope"}, headers=headers, token=admin.token)
        assert (resp.status, resp.error_code) == (422, "request.version_required"), headers
    assert raw_db.users.find_one({"_id": rep.user["_id"]})["name"] == rep.user["name"]


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "field, value",
    [("_id", "0" * 24), ("created_by", "intruder"), ("token_version", 99), ("password_hash", "$argon2id$x"), ("username", "renamed"), ("openid", "o-hijack")],
)
async def test_patch_with_unknown_fields_is_422_and_changes_nothing(api, people, raw_db, field, value):
    admin = await people.admin()
    rep = await people.rep()
    before = raw_db.users.find_one({"_id": rep.user["_id"]})
    resp = await api.patch(f"{USERS}/{rep.id}", json={"name": "changed", "version": 1, field: value}, token=admin.token)
    assert resp.status == 422, resp.body
    assert before == raw_db.users.find_one({"_id": rep.user["_id"]})


@pytest.mark.gen_test
async def test_unknown_user_patch_is_404(api, people):
    admin = await people.admin()
    resp = await api.patch(f"{USERS}/{ObjectId()}", json={"name": "x", "version": 1}, token=admin.token)
    assert (resp.status, resp.error_code) == (404, "user.not_found")


@pytest.mark.gen_test
async def test_admin_cannot_deactivate_self(api, people, raw_db):
    admin = await people.admin()
    resp = await api.patch(f"{USERS}/{admin.id}", json={"active": False, "version": 1}, token=admin.token)
    assert resp.status == 422
    assert raw_db.users.find_one({"_id": admin.user["_id"]})["active"]
    assert (await api.get("/api/v1/me", token=admin.token)).status == 200


@pytest.mark.gen_test
async def test_team_patch_with_version(api, people):
    admin = await people.admin()
    team_id = await people.team()
    ok = await api.patch(f"{TEAMS}/{team_id}", json={"description": "北京", "version": 1}, token=admin.token)
    assert ok.status == 200 and ok.json["version"] == 2 and ok.json["description"] == "北京"
    stale = await api.patch(f"{TEAMS}/{team_id}", json={"description": "天津", "version": 1}, token=admin.token)
    assert (stale.status, stale.error_code) == (412, "team.version_mismatch")


# ---------------------------------------------------------------- manager scope
@pytest.mark.gen_test
async def test_manager_lists_only_own_team(api, people):
    manager = await people.manager(team="华北")
    own_rep = await people.rep(team="华北")
    other_rep = await people.rep(team="华东")
    other_team = await people.team("华东")
    for query in ("", f"?team_id={other_team}", f"?team_id={other_team}&role=rep", "?role=rep"):
        resp = await api.get(USERS + query, token=manager.token)
        assert resp.status == 200, (query, resp.body)
        ids = {u["id"] for u in resp.json["items"]}
        assert other_rep.id not in ids, query
        assert all(u["team_id"] == manager.team_id for u in resp.json["items"]), query
    everyone = {u["id"] for u in (await api.get(USERS, token=manager.token)).json["items"]}
    assert everyone == {manager.id, own_rep.id}
    teams = await api.get(TEAMS, token=manager.token)
    assert [t["id"] for t in teams.json["items"]] == [manager.team_id]


@pytest.mark.gen_test
async def test_manager_cannot_read_other_teams_user_or_team(api, people):
    manager = await people.manager(team="华北")
    own_rep = await people.rep(team="华北")
    other_rep = await people.rep(team="华东")
    other_team = await people.team("华东")
    assert (await api.get(f"{USERS}/{own_rep.id}", token=manager.token)).status == 200
    resp = await api.get(f"{USERS}/{other_rep.id}", token=manager.token)
    missing = await api.get(f"{USERS}/{ObjectId()}", token=manager.token)
    assert (resp.status, resp.error_code) == (404, "user.not_found")
    assert (resp.status, resp.json) == (missing.status, missing.json), "not yours must look like not there"
    assert (await api.get(f"{TEAMS}/{other_team}", token=manager.token)).status == 404


@pytest.mark.gen_test
async def test_manager_cannot_write(api, people, raw_db):
    manager = await people.manager()
    own_rep = await people.rep()
    create = await api.post(USERS, json=new_user(manager.team_id), token=manager.token)
    assert (create.status, create.error_code) == (403, "auth.forbidden")
    patch = await api.patch(f"{USERS}/{own_rep.id}", json={"name": "x", "version": 1}, token=manager.token)
    assert (patch.status, patch.error_code) == (403, "auth.forbidden")
    promote = await api.patch(f"{USERS}/{manager.id}", json={"role": "admin", "version": 1}, token=manager.token)
    assert promote.status == 403
    bind = await api.post(f"{USERS}/{own_rep.id}/bind-code", token=manager.token)
    assert bind.status == 403
    assert raw_db.users.count_documents({"username": "wang.wu"}) == 0
    assert raw_db.users.find_one({"_id": manager.user["_id"]})["role"] == "manager"


# ---------------------------------------------------------------- every route, every method
def _fill(pattern: str, value: str) -> str:
    return re.sub(r"\{\w+\}", value, openapi_path(pattern)).replace("\\.", ".")


def _restricted_operations(role: str) -> list[tuple[str, str]]:
    found = []
    for path, method, _handler, spec in route_operations(API_ROUTES):
        if not spec.public and role not in spec.roles:
            found.append((path, method))
    return found


@pytest.mark.parametrize("role", ["rep", "customer"])
def test_route_table_has_restricted_routes(role):
    """Guards the loop below against silently testing nothing."""
    ops = _restricted_operations(role)
    assert ("/api/v1/users", "post") in ops and ("/api/v1/users/{user_id}", "patch") in ops


@pytest.mark.gen_test
@pytest.mark.parametrize("role", ["rep", "customer"])
async def test_every_restricted_route_is_403_for_role(api, people, wechat, raw_db, role):
    state, _ = wechat
    person = await people.rep() if role == "rep" else await people.customer(state)
    target = await people.rep(team="目标团队")
    real_id = target.id
    before_users = list(raw_db.users.find({}, sort=[("_id", 1)]))
    before_teams = list(raw_db.teams.find({}, sort=[("_id", 1)]))
    failures = []
    checked = 0
    for route in API_ROUTES:
        pattern, handler = route[0], route[1]
        for method in METHODS:
            spec = getattr(handler.__dict__.get(method) or getattr(handler, method, None), "operation", None)
            if spec is None or spec.public or role in spec.roles:
                continue
            path = _fill(pattern, real_id)
            body = {"name": "x", "version": 1, "role": "admin"} if method in ("post", "patch", "put") else None
            resp = await api.request(method.upper(), path, json_body=body, token=person.token)
            checked += 1
            if (resp.status, resp.error_code) != (403, "auth.forbidden"):
                failures.append(f"{method.upper()} {path}: {resp.status} {resp.body[:120]!r}")
    assert checked >= 5
    assert not failures, "\n".join(failures)
    assert before_users == list(raw_db.users.find({}, sort=[("_id", 1)]))
    assert before_teams == list(raw_db.teams.find({}, sort=[("_id", 1)]))


@pytest.mark.gen_test
async def test_restricted_routes_need_a_token(api, people):
    target = await people.rep()
    failures = []
    for path, method, _handler, spec in route_operations(API_ROUTES):
        if spec.public:
            continue
        resp = await api.request(method.upper(), re.sub(r"\{\w+\}", target.id, path),
                                 json_body={} if method in ("post", "patch", "put") else None)
        if (resp.status, resp.error_code) != (401, "auth.required"):
            failures.append(f"{method.upper()} {path}: {resp.status} {resp.body[:120]!r}")
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------- pagination and ids
@pytest.mark.gen_test
async def test_pagination_walks_every_user_once(api, people, raw_db):
    admin = await people.admin()
    for _ in range(4):
        await people.rep()
    expected = {str(d["_id"]) for d in raw_db.users.find({}, {"_id": 1})}
    assert len(expected) == 5
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        resp = await api.get(USERS + "?limit=2" + (f"&cursor={cursor}" if cursor else ""), token=admin.token)
        assert resp.status == 200, resp.body
        assert len(resp.json["items"]) <= 2
        seen.extend(u["id"] for u in resp.json["items"])
        pages += 1
        cursor = resp.json["next_cursor"]
        if cursor is None:
            break
        assert pages < 10
    assert len(seen) == len(set(seen)), "duplicates across pages"
    assert set(seen) == expected
    assert pages == 3


@pytest.mark.gen_test
async def test_limit_is_capped(api, people):
    admin = await people.admin()
    for limit in ("100000", "101", "0", "-1", "abc"):
        resp = await api.get(f"{USERS}?limit={limit}", token=admin.token)
        assert (resp.status, resp.error_code) == (422, "request.invalid"), limit
    assert (await api.get(f"{USERS}?limit=100", token=admin.token)).status == 200


@pytest.mark.gen_test
async def test_garbage_cursor_is_400(api, people):
    admin = await people.admin()
    for cursor in ("garbage", "%24%24%24", "W10", "eyJhIjoxfQ", quote('[{"v": {"$ne": 1}}]')):
        resp = await api.get(f"{USERS}?cursor={cursor}", token=admin.token)
        assert (resp.status, resp.error_code) == (400, "request.bad_cursor"), (cursor, resp.body)


@pytest.mark.gen_test
async def test_unknown_query_parameter_is_422(api, people):
    admin = await people.admin()
    resp = await api.get(f"{USERS}?password_hash=x", token=admin.token)
    assert resp.status == 422


@pytest.mark.gen_test
async def test_malformed_user_id_is_404(api, people):
    admin = await people.admin()
    for raw in ("zzz", quote('{"$ne":1}', safe=""), "0" * 23, "6" * 25, quote("abc def")):
        resp = await api.get(f"{USERS}/{raw}", token=admin.token)
        assert (resp.status, resp.error_code) == (404, "user.not_found"), (raw, resp.body)
        patched = await api.patch(f"{USERS}/{raw}", json={"name": "x", "version": 1}, token=admin.token)
        assert (patched.status, patched.error_code) == (404, "user.not_found"), (raw, patched.body)
    team = await api.get(f"{TEAMS}/zzz", token=admin.token)
    assert (team.status, team.error_code) == (404, "team.not_found")
