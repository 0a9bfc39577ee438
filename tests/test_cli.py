"""``python -m server`` as an operator runs it: create-user, ensure-indexes, run-job, refusing
unsafe production settings, and ``run`` — serving, refusing a second instance on the same data
folder, and shutting down cleanly on SIGTERM with no database process left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from server.embedded import free_port, port_in_use

ROOT = Path(__file__).resolve().parent.parent
BOSS_PASSWORD = "long-password-1"


class Cli:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.embedded_port = free_port()

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MPCRM_")}
        env.update(
            MPCRM_DATA_DIR=str(self.data_dir), MPCRM_EMBEDDED_PORT=str(self.embedded_port), MPCRM_ENV="test",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def run(self, *args: str, timeout: float = 60, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "server", *args], cwd=ROOT, env=self.env(**extra),
            capture_output=True, text=True, timeout=timeout,
        )


@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> Cli:
    return Cli(tmp_path_factory.mktemp("cli") / "data")


@pytest.fixture(scope="module")
def boss(cli) -> dict:
    done = cli.run("create-user", "--username", "boss", "--password", BOSS_PASSWORD, "--role", "admin")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_create_user_prints_the_new_user(cli, boss):
    assert len(boss["id"]) == 24 and int(boss["id"], 16) >= 0
    assert boss["username"] == "boss" and boss["role"] == "admin"
    again = cli.run("create-user", "--username", "boss", "--password", BOSS_PASSWORD, "--role", "admin")
    assert again.returncode != 0
    assert "user.username_taken" in again.stderr
    rep = cli.run("create-user", "--username", "li.lei", "--password", BOSS_PASSWORD, "--role", "rep", "--team", "华北销售部")
    assert rep.returncode == 0, rep.stderr
    assert json.loads(rep.stdout)["team_id"]


def test_ensure_indexes_and_run_job(cli, boss):
    indexes = cli.run("ensure-indexes")
    assert indexes.returncode == 0, indexes.stderr
    names = json.loads(indexes.stdout)["indexes"]
    assert "users.username_1" in names and "refresh_tokens.family_id_1" in names

    job = cli.run("run-job", "purge_revoked_sessions")
    assert job.returncode == 0, job.stderr
    assert json.loads(job.stdout) == {"job": "purge_revoked_sessions", "deleted": 0}

    as_of = cli.run("run-job", "purge_revoked_sessions", "--now", "2026-11-23T09:00:00+08:00")
    assert as_of.returncode == 0, as_of.stderr

    unknown = cli.run("run-job", "nope")
    assert unknown.returncode != 0
    assert "job.unknown" in unknown.stderr and "nope" in unknown.stderr
    # it names the valid jobs, so the operator can pick one
    for name in ("purge_revoked_sessions", "rfm_layers", "deliver_outbox"):
        assert name in unknown.stderr, unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_seed_demo_creates_the_leads_its_help_promises_once(cli):
    helptext = cli.run("--help")
    assert "their leads" in helptext.stdout, helptext.stdout
    first = cli.run("seed-demo")
    assert first.returncode == 0, first.stderr
    seeded = json.loads(first.stdout)
    assert set(seeded["users"]) >= {"admin", "wang.manager", "li.rep", "han.rep", "zhao.manager", "sun.rep"}
    assert seeded["leads"] == {"created": 6, "existing": 0}
    again = cli.run("seed-demo")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["leads"] == {"created": 0, "existing": 6}
    assert json.loads(again.stdout)["users"] == seeded["users"]


def test_production_with_default_secrets_refuses_to_start(cli):
    started = time.monotonic()
    done = cli.run("ensure-indexes", MPCRM_ENV="production")
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "MPCRM_JWT_SECRET" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 10
    run = cli.run("run", MPCRM_ENV="production", timeout=20)
    assert run.returncode == 2 and "MPCRM_JWT_SECRET" in run.stderr


# ---------------------------------------------------------------- run
def _http(method: str, url: str, body: dict | None = None, timeout: float = 5) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _nx_processes_on(data_dir: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "nx-27017" in cmdline and str(data_dir) in cmdline:
            found.append(int(proc.name))
    return found


def _start(cli: Cli, logs: Path, **extra: str) -> subprocess.Popen:
    out = open(logs.with_suffix(".out"), "w")
    err = open(logs.with_suffix(".err"), "w")
    try:
        return subprocess.Popen([sys.executable, "-m", "server", "run"], cwd=ROOT, env=cli.env(**extra), stdout=out, stderr=err)
    finally:
        out.close()
        err.close()


def test_run_serves_refuses_a_second_instance_and_stops_cleanly(cli, boss, tmp_path):
    port, stub_port = free_port(), free_port()
    run_env = dict(
        MPCRM_PORT=str(port), MPCRM_WECHAT_API_BASE=f"http://127.0.0.1:{stub_port}", MPCRM_ENV="development",
        MPCRM_SCHEDULER="on", MPCRM_ARGON2_TIME_COST="1", MPCRM_ARGON2_MEMORY_KIB="1024",
    )
    base = f"http://127.0.0.1:{port}"
    server = _start(cli, tmp_path / "first", **run_env)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, (tmp_path / "first.err").read_text()
            try:
                if _http("GET", base + "/healthz", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the server did not answer /healthz within 30 s"
            time.sleep(0.1)

        status, body = _http("POST", base + "/api/v1/auth/password-login", {"username": "boss", "password": BOSS_PASSWORD})
        assert status == 200, body
        assert json.loads(body)["user"]["id"] == boss["id"]
        status, body = _http("GET", base + "/docs")
        assert status == 200 and b"swagger-ui-bundle.js" in body
        assert _http("GET", base + "/readyz")[0] == 200
        # in development the fake WeChat API runs too, so the mini-program login works offline
        status, body = _http("POST", f"http://127.0.0.1:{stub_port}/__stub__/login-codes", {"openid": "o-cli-user"})
        assert status == 200
        status, body = _http("POST", base + "/api/v1/auth/wechat-login", {"code": json.loads(body)["code"]})
        assert status == 200 and json.loads(body)["user"]["role"] == "customer", body

        # a second instance on the same data folder (other ports) is refused, quickly and clearly
        started = time.monotonic()
        second = cli.run(
            "run", timeout=30, **{**run_env, "MPCRM_PORT": str(free_port()), "MPCRM_EMBEDDED_PORT": str(free_port()),
                                  "MPCRM_WECHAT_API_BASE": f"http://127.0.0.1:{free_port()}"},
        )
        assert second.returncode != 0
        assert "already in use" in second.stderr and str(cli.data_dir.resolve()) in second.stderr, second.stderr
        assert "Traceback" not in second.stderr, second.stderr
        assert time.monotonic() - started < 15
        # and one started with exactly the same settings too
        twin = cli.run("run", timeout=30, **run_env)
        assert twin.returncode != 0 and "already" in twin.stderr, twin.stderr
        assert _http("GET", base + "/healthz")[0] == 200, "the first instance is unharmed"
        assert _nx_processes_on(cli.data_dir), "the first instance's database is running"
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
            pytest.fail("the server did not stop within 15 s of SIGTERM")
    assert code == 0, (tmp_path / "first.err").read_text()[-2000:]
    assert _nx_processes_on(cli.data_dir) == []
    assert not port_in_use("127.0.0.1", port) and not port_in_use("127.0.0.1", stub_port)
    assert not port_in_use("127.0.0.1", cli.embedded_port)
    log = (tmp_path / "first.err").read_text()
    assert '"stopped"' in log and BOSS_PASSWORD not in log
