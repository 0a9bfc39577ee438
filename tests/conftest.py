"""Test harness: one database server per session (an embedded nx-27017, or the MongoDB named by
``MPCRM_TEST_MONGODB_URI``), a fresh database per test, the real app over
HTTP, the fake WeChat API, login helpers for each role, and DB command recording.

Every test's recorded queries are checked against the indexes declared in ``server/db.py``; a
query shape no index serves fails the test at teardown.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import PyMongoError
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from config.settings import Settings  # noqa: E402
from index_check import CommandRecorder, bare_datetime_writes, unserved  # noqa: E402
from miniprogram_stub.wechat_api import StubState, make_stub_app  # noqa: E402
from server.actor import Actor  # noqa: E402
from server.app import make_app  # noqa: E402
from server.clock import Clock  # noqa: E402
from server.context import AppContext, build_context  # noqa: E402
from server.db import connect, ensure_indexes  # noqa: E402
from server.embedded import EmbeddedMongo, free_port  # noqa: E402
from server.schemas.users import TeamCreate, UserCreate  # noqa: E402

TEST_ADMIN = Actor(id="test-admin", role="admin", name="test")
PASSWORD = "correct horse battery"


# ---------------------------------------------------------------- session: the database server
TEST_MONGODB_URI = "MPCRM_TEST_MONGODB_URI"


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory) -> str:
    """The server the suite runs against: ``MPCRM_TEST_MONGODB_URI`` when it is set (a real MongoDB,
    or an nx-27017 started by hand), otherwise an embedded nx-27017 started for this session. Either
    way each test has a database of its own (``db_name``), dropped when the test ends (``ctx``)."""
    external = os.environ.get(TEST_MONGODB_URI, "").strip()
    if external:
        try:
            with MongoClient(external, serverSelectionTimeoutMS=5000) as client:
                client.admin.command("ping")
        except PyMongoError as exc:
            pytest.exit(f"{TEST_MONGODB_URI}={external}: no MongoDB answers there ({exc})", returncode=3)
        yield external
        return
    server = EmbeddedMongo(tmp_path_factory.mktemp("nx"), free_port())
    server.start()
    yield server.uri
    server.stop()


# ---------------------------------------------------------------- per test
@pytest.fixture
def wechat(io_loop) -> tuple[StubState, str]:
    """The fake WeChat API on a free port of this test's loop."""
    state = StubState()
    sock, port = bind_unused_port()
    server = HTTPServer(make_stub_app(state))
    server.add_sockets([sock])
    yield state, f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def settings_overrides() -> dict:
    """Override in a test module to change settings for its tests."""
    return {}


@pytest.fixture
def settings(wechat, settings_overrides) -> Settings:
    _, base = wechat
    values = dict(
        env="test",
        wechat_api_base=base,
        wechat_timeout_s=2.0,
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        scheduler="off",
        # Allocation after capture runs after the response, racing the test; allocation tests turn it on.
        allocate_on_capture=False,
        db_timeout_ms=3000,
        db_server_selection_timeout_ms=1000,
    )
    values.update(settings_overrides)
    return Settings(**values)


@pytest.fixture
def recorder() -> CommandRecorder:
    return CommandRecorder()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_name() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def ctx(io_loop, mongo_uri, settings, recorder, clock, db_name) -> AppContext:
    database = connect(mongo_uri, settings, db_name=db_name, listeners=[recorder])
    io_loop.run_sync(lambda: ensure_indexes(database.db))
    context = build_context(settings, database, clock)
    yield context
    # the test's database goes with it, so a long-lived server (MPCRM_TEST_MONGODB_URI) does not fill up
    io_loop.run_sync(lambda: database.client.drop_database(db_name))
    io_loop.run_sync(database.close)
    missing = unserved(recorder.shapes())
    if missing:
        pytest.fail("queries with no index declared in server/db.py:\n  " + "\n  ".join(missing), pytrace=False)
    bare = bare_datetime_writes(recorder.commands)
    if bare:
        pytest.fail("datetimes written with an update operator (see docs/mongodb-compat.md):\n  " + "\n  ".join(bare), pytrace=False)


@pytest.fixture
def raw_db(mongo_uri, db_name):
    """A plain synchronous client for assertions on stored data (not recorded, not index-checked)."""
    client = MongoClient(mongo_uri, tz_aware=True)
    yield client[db_name]
    client.drop_database(db_name)
    client.close()


@pytest.fixture
def app(ctx):
    return make_app(ctx)


# ---------------------------------------------------------------- HTTP helpers
@dataclass
class Response:
    status: int
    headers: Any
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def error_code(self) -> str | None:
        data = self.json
        return data.get("error", {}).get("code") if isinstance(data, dict) else None


class Api:
    """Talks to the running app over real HTTP."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = AsyncHTTPClient()

    async def request(
        self, method: str, path: str, *, json_body: Any = None, body: bytes | str | None = None,
        token: str | None = None, headers: dict | None = None, timeout: float = 20,
    ) -> Response:
        hdrs = {"Content-Type": "application/json"}
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        hdrs.update(headers or {})
        if json_body is not None:
            body = json.dumps(json_body)
        if body is None and method in ("POST", "PATCH", "PUT"):
            body = b""
        req = HTTPRequest(self.base_url + path, method=method, headers=hdrs, body=body, request_timeout=timeout, allow_nonstandard_methods=True)
        resp = await self.http.fetch(req, raise_error=False)
        return Response(resp.code, resp.headers, resp.body or b"")

    async def get(self, path: str, **kw) -> Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, json: Any = None, **kw) -> Response:
        return await self.request("POST", path, json_body=json, **kw)

    async def patch(self, path: str, json: Any = None, **kw) -> Response:
        return await self.request("PATCH", path, json_body=json, **kw)

    async def delete(self, path: str, **kw) -> Response:
        return await self.request("DELETE", path, **kw)


@pytest.fixture
def api(http_server, base_url) -> Api:
    return Api(base_url)


# ---------------------------------------------------------------- people
@dataclass
class Person:
    user: dict
    token: str
    refresh_token: str

    @property
    def id(self) -> str:
        return str(self.user["_id"])

    @property
    def team_id(self) -> str | None:
        return self.user.get("team_id")


class People:
    """Factories for users of each role, made through the services (never raw inserts)."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self._teams: dict[str, str] = {}

    async def team(self, name: str = "华北销售部") -> str:
        if name not in self._teams:
            team = await self.ctx.users.create_team(TEST_ADMIN, TeamCreate(name=name))
            self._teams[name] = str(team["_id"])
        return self._teams[name]

    async def make(self, role: str, *, team: str | None = "华北销售部", username: str | None = None, **fields) -> Person:
        team_id = await self.team(team) if team and role != "admin" else None
        user = await self.ctx.users.create_user(
            TEST_ADMIN,
            UserCreate.model_validate(
                {"username": username or f"{role}-{uuid.uuid4().hex[:8]}", "password": PASSWORD, "name": f"{role} user", "role": role, "team_id": team_id, **fields}
            ),
        )
        return await self.login(user)

    async def login(self, user: dict) -> Person:
        pair = await self.ctx.auth.issue_tokens(user)
        return Person(user=user, token=pair["access_token"], refresh_token=pair["refresh_token"])

    async def customer(self, wechat_state: StubState, openid: str | None = None) -> Person:
        code = wechat_state.issue_login_code(openid or f"o{uuid.uuid4().hex[:20]}")["code"]
        pair = await self.ctx.auth.wechat_login(code, None)
        return Person(user=pair["user"], token=pair["access_token"], refresh_token=pair["refresh_token"])

    async def admin(self, **kw) -> Person:
        return await self.make("admin", team=None, **kw)

    async def manager(self, team: str = "华北销售部", **kw) -> Person:
        return await self.make("manager", team=team, **kw)

    async def rep(self, team: str = "华北销售部", **kw) -> Person:
        return await self.make("rep", team=team, **kw)


@pytest.fixture
def people(ctx) -> People:
    return People(ctx)


@pytest.fixture
def form(io_loop, api, people):
    """A published expo form (capture_kit.expo_form) for a new team, made by an admin."""
    from capture_kit import create_form

    async def make():
        return await create_form(api, await people.admin(), await people.team())

    return io_loop.run_sync(make)


# ---------------------------------------------------------------- logs
@pytest.fixture
def captured_logs(caplog):
    """Every log line the app writes during the test, formatted as in production."""
    from server.logs import JsonFormatter

    caplog.set_level(logging.DEBUG)
    formatter = JsonFormatter()

    def lines() -> list[str]:
        return [formatter.format(r) for r in caplog.records]

    return lines
