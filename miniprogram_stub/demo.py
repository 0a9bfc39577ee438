"""``make demo``: start mpcrm on one machine (no WeChat account needed) and tell the story of one lead.

Starts the embedded database on a temporary folder, then ``python -m server run`` against it (with the
fake WeChat API in-process and the scheduler off), creates the admin with
``python -m server create-user``, and plays ``miniprogram_stub.journey``; jobs run as
``python -m server run-job NAME --now ISO`` with the clock moved forward. Everything it started is
stopped at the end, also on failure or Ctrl-C.

With ``DEMO_BASE_URL`` (and ``DEMO_WECHAT_BASE``, ``MPCRM_MONGODB_URI`` for the jobs, and
``DEMO_ADMIN_USERNAME``/``DEMO_ADMIN_PASSWORD``) it uses a server that is already running instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from miniprogram_stub.journey import REQUIRED_JOBS, Env, JourneyError, run
from miniprogram_stub.server_process import start_server, stop_server

if TYPE_CHECKING:
    from server.embedded import EmbeddedMongo

ROOT = Path(__file__).resolve().parent.parent


def fail(message: str) -> None:
    print(f"demo FAILED: {message}", file=sys.stderr, flush=True)


class System:
    """The processes of one demo: the embedded DB (in this process) and the API server (child)."""

    def __init__(self, overrides: dict[str, str] | None = None) -> None:
        self.overrides = dict(overrides or {})  # environment over the demo's (e.g. the simulator tests' backend)
        self.tmp = Path(tempfile.mkdtemp(prefix="mpcrm-demo-"))
        self.embedded: EmbeddedMongo | None = None
        self.server: subprocess.Popen | None = None
        self.env: dict[str, str] = {}
        self.log_path = self.tmp / "server.log"

    def start(self) -> None:
        from server.embedded import EmbeddedMongo, free_port

        self.embedded = EmbeddedMongo(self.tmp / "data", free_port())
        self.embedded.start()
        port, wx_port = free_port(), free_port()
        self.env = {
            **os.environ,
            "MPCRM_ENV": "development",
            "MPCRM_MONGODB_URI": self.embedded.uri,
            "MPCRM_DB_NAME": "mpcrm_demo",
            "MPCRM_DATA_DIR": str(self.tmp / "data"),
            "MPCRM_PORT": str(port),
            "MPCRM_WECHAT_API_BASE": f"http://127.0.0.1:{wx_port}",
            "MPCRM_WECHAT_STUB": "true",
            "MPCRM_SCHEDULER": "off",
            "MPCRM_ALLOCATE_ON_CAPTURE": "false",  # the story runs the allocation job itself
            "PYTHONPATH": str(ROOT),
            **self.overrides,
        }
        self.base_url = f"http://127.0.0.1:{port}"
        self.wechat_base = f"http://127.0.0.1:{wx_port}"
        try:
            self.server = start_server(sys.executable, self.env, self.base_url, self.log_path, timeout_s=30)
        except RuntimeError as exc:
            raise JourneyError(str(exc)) from None

    def stop(self) -> None:
        stop_server(self.server, timeout_s=15)
        if self.embedded is not None:
            self.embedded.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


def cli(env: dict, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "server", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise JourneyError(f"`python -m server {' '.join(args)}` exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-1500:]}")
    out = proc.stdout.strip()
    return json.loads(out[out.index("{"):]) if "{" in out else {}


def job_runner(env: dict):
    def run_job(name: str, now: datetime | None) -> dict:
        args = ["run-job", name] + (["--now", now.isoformat()] if now else [])
        try:
            return cli(env, *args)
        except JourneyError as exc:
            if "job.unknown" in str(exc):
                raise JourneyError(f"job {name!r} does not exist in this build (jobs.registry): that part is not finished, so the demo stops here") from None
            raise
    return run_job


def check_jobs() -> None:
    from jobs.registry import load_jobs

    missing = [name for name in REQUIRED_JOBS if name not in load_jobs()]
    if missing:
        raise JourneyError(f"jobs missing from this build: {', '.join(missing)} (their parts are not finished)")


def main() -> int:
    print("mpcrm demo: one lead from the public form to the renewal reminder", flush=True)
    system = None
    try:
        check_jobs()
        if os.environ.get("DEMO_BASE_URL"):
            base_url, wechat_base = os.environ["DEMO_BASE_URL"], os.environ.get("DEMO_WECHAT_BASE", "http://127.0.0.1:8100")
            if not os.environ.get("MPCRM_MONGODB_URI"):
                raise JourneyError("with DEMO_BASE_URL, set MPCRM_MONGODB_URI (the server's database) so the demo can run jobs with --now")
            env = dict(os.environ)
            env.setdefault("MPCRM_WECHAT_API_BASE", wechat_base)  # the jobs it runs send through the same fake WeChat
            username, password = os.environ.get("DEMO_ADMIN_USERNAME", "demo-admin"), os.environ.get("DEMO_ADMIN_PASSWORD", "demo-admin-pass")
            print(f"using the running server at {base_url} (fake WeChat {wechat_base})", flush=True)
        else:
            system = System()
            system.start()
            env, base_url, wechat_base = system.env, system.base_url, system.wechat_base
            print(f"started: embedded DB {system.env['MPCRM_MONGODB_URI'].split('/?')[0]}, API {base_url}, fake WeChat {wechat_base}, scheduler off", flush=True)
            username, password = "demo-admin", "demo-admin-pass"
        tag = uuid.uuid4().hex[:6]
        try:
            admin = cli(env, "create-user", "--username", username, "--password", password, "--role", "admin", "--name", "演示管理员")
            print(f"admin {admin['username']} created with `python -m server create-user` ({admin['id']})", flush=True)
        except JourneyError as exc:
            if "exists" not in str(exc) and "taken" not in str(exc) and "duplicate" not in str(exc):
                raise
        journey_env = Env(base_url=base_url, wechat_base=wechat_base, run_job=job_runner(env), admin_username=username,
                          admin_password=password, tag=tag, say=lambda s: print(s, flush=True))
        run(journey_env)
        print("demo OK: form → allocation → WeChat message → visit → reminder → contract → approval → customer → team funnel → renewal reminder", flush=True)
        return 0
    except JourneyError as exc:
        fail(str(exc))
        if system is not None and system.log_path.exists():
            print("--- server log (tail) ---\n" + system.log_path.read_text(errors="replace")[-1500:], file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        fail("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - report anything else clearly, then clean up
        fail(f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        if system is not None:
            system.stop()
            print("stopped the API server and the embedded database; removed the temporary data folder", flush=True)


if __name__ == "__main__":
    sys.exit(main())
