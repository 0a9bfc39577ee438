"""``python -m server run`` owning the embedded database: the other commands work beside it
(they use its database instead of saying "already in use"), and ``run`` supervises the database
it started — a ``kill -9`` is noticed, reported on ``/readyz`` and repaired; a database that cannot
be brought back ends ``run`` with a non-zero exit, for the process manager."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from server.embedded import free_port, port_in_use
from test_cli import ROOT, Cli, _http, _nx_processes_on, _start  # noqa: F401

PASSWORD = "long-password-1"


class Running:
    def __init__(self, cli: Cli, logs: Path, **extra: str) -> None:
        self.cli = cli
        self.logs = logs
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = dict(MPCRM_PORT=str(self.port), MPCRM_SCHEDULER="off", MPCRM_ARGON2_TIME_COST="1", MPCRM_ARGON2_MEMORY_KIB="1024")
        env.update(extra)
        self.proc = _start(cli, logs, **env)
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, self.stderr()
            try:
                if _http("GET", self.base + "/healthz", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the server did not answer /healthz within 30 s"
            time.sleep(0.1)

    def stderr(self) -> str:
        return self.logs.with_suffix(".err").read_text()

    def nx_pid(self) -> int:
        pids = _nx_processes_on(self.cli.data_dir)
        assert len(pids) == 1, pids
        return pids[0]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            pytest.fail("the server did not stop within 20 s of SIGTERM")


def _login(base: str, username: str) -> str:
    status, body = _http("POST", base + "/api/v1/auth/password-login", {"username": username, "password": PASSWORD})
    assert status == 200, body
    return json.loads(body)["access_token"]


def _authed(method: str, url: str, token: str, body: dict | None = None) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _ready(base: str) -> tuple[int, dict]:
    status, body = _http("GET", base + "/readyz", timeout=10)
    return status, json.loads(body)


def test_commands_work_beside_a_running_server(tmp_path):
    cli = Cli(tmp_path / "data")
    server = Running(cli, tmp_path / "run")
    try:
        started = time.monotonic()
        made = cli.run("create-user", "--username", "boss", "--password", PASSWORD, "--role", "admin")
        assert made.returncode == 0, made.stderr
        assert "already in use" not in made.stderr
        assert time.monotonic() - started < 30
        user = json.loads(made.stdout)
        token = _login(server.base, "boss")  # the running server sees the new user at once
        status, body = _authed("GET", server.base + "/api/v1/me", token)
        assert status == 200 and json.loads(body)["id"] == user["id"]

        job = cli.run("run-job", "purge_revoked_sessions")
        assert job.returncode == 0, job.stderr
        assert json.loads(job.stdout) == {"job": "purge_revoked_sessions", "deleted": 0}
        indexes = cli.run("ensure-indexes")
        assert indexes.returncode == 0, indexes.stderr
        # the command left the server's database running
        assert len(_nx_processes_on(cli.data_dir)) == 1
        assert _ready(server.base)[0] == 200
        # a second `run` is still refused
        twin = cli.run("run", timeout=30, MPCRM_PORT=str(free_port()))
        assert twin.returncode != 0 and "already in use" in twin.stderr, twin.stderr
    finally:
        code = server.stop()
    assert code == 0, server.stderr()[-2000:]
    assert _nx_processes_on(cli.data_dir) == []
    # with no server running the commands start the database themselves, as before
    alone = cli.run("run-job", "purge_revoked_sessions")
    assert alone.returncode == 0, alone.stderr


def test_the_demo_runs_against_a_server_started_like_make_run(tmp_path):
    """The demo's DEMO_BASE_URL mode (docs/miniprogram.md): `make run` in development (scheduler on, the fake WeChat
    started by `run`, the built-in template defaults), an admin made with `create-user` beside it,
    then `make demo` pointed at it. It once failed on the lease bug, then on templates."""
    cli = Cli(tmp_path / "data")
    stub = f"http://127.0.0.1:{free_port()}"
    server = Running(cli, tmp_path / "run", MPCRM_ENV="development", MPCRM_SCHEDULER="on", MPCRM_WECHAT_API_BASE=stub)
    try:
        made = cli.run("create-user", "--username", "demo-admin", "--password", "demo-admin-pass", "--role", "admin", MPCRM_ENV="development")
        assert made.returncode == 0, made.stderr
        uri = f"mongodb://127.0.0.1:{cli.embedded_port}/?directConnection=true"
        env = cli.env(MPCRM_ENV="development", MPCRM_MONGODB_URI=uri, DEMO_BASE_URL=server.base, DEMO_WECHAT_BASE=stub)
        demo = subprocess.run([sys.executable, "-m", "miniprogram_stub.demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        assert "demo OK" in demo.stdout
        assert "sent=1" in demo.stdout and "in_app_only=0" in demo.stdout  # a real WeChat message, not in-app only
    finally:
        code = server.stop()
    assert code == 0, server.stderr()[-2000:]


def test_killed_database_is_restarted_and_readyz_says_so(tmp_path):
    cli = Cli(tmp_path / "data")
    server = Running(cli, tmp_path / "run")
    try:
        assert cli.run("create-user", "--username", "li.lei", "--password", PASSWORD, "--role", "rep", "--team", "华北销售部").returncode == 0
        token = _login(server.base, "li.lei")
        status, body = _authed("POST", server.base + "/api/v1/leads", token, {"name": "重启之前"})
        assert status == 201, body
        before = json.loads(body)["id"]

        killed = server.nx_pid()
        os.kill(killed, signal.SIGKILL)
        seen, deadline = [], time.monotonic() + 30
        while True:
            status, body = _ready(server.base)
            seen.append((status, body.get("error", {}).get("details")))
            if status == 200 and any(s == 503 for s, _ in seen):
                break
            assert time.monotonic() < deadline, seen
            time.sleep(0.1)
        assert ["restarting"] in [[x["code"] for x in d if x["field"] == "database"] for s, d in seen if s == 503], seen
        assert server.proc.poll() is None
        assert server.nx_pid() != killed, "a new database process"

        status, body = _authed("GET", server.base + f"/api/v1/leads/{before}", token)
        assert status == 200 and json.loads(body)["name"] == "重启之前", body
        status, body = _authed("POST", server.base + "/api/v1/leads", token, {"name": "重启之后"})
        assert status == 201, body
        log = server.stderr()
        assert "embedded database exited; restarting it" in log and "embedded database restarted" in log
    finally:
        code = server.stop()
    assert code == 0, server.stderr()[-2000:]
    assert _nx_processes_on(cli.data_dir) == []


def test_a_database_that_cannot_be_restarted_ends_run_non_zero(tmp_path):
    cli = Cli(tmp_path / "data")
    server = Running(cli, tmp_path / "run", MPCRM_EMBEDDED_RESTART_MAX="2")
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        os.kill(server.nx_pid(), signal.SIGKILL)
        # something else takes the database's port: every restart fails
        deadline = time.monotonic() + 5
        while True:
            try:
                blocker.bind(("127.0.0.1", cli.embedded_port))
                break
            except OSError:
                assert time.monotonic() < deadline, "the killed database's port stayed busy"
                time.sleep(0.02)
        blocker.listen(8)
        try:
            code = server.proc.wait(30)
        except subprocess.TimeoutExpired:
            pytest.fail("run kept going with no database: " + server.stderr()[-2000:])
    finally:
        blocker.close()
        server.stop()
    assert code != 0
    log = server.stderr()
    assert "embedded database restart failed" in log and "could not be restarted" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert _nx_processes_on(cli.data_dir) == []
    assert not port_in_use("127.0.0.1", server.port)
