"""The real backend for one mini-program simulator test file (``miniprogram_stub/sim/backend.js``).

``python -m miniprogram_stub.sim_backend`` starts the embedded database, ``python -m server run``
(fake WeChat in-process, scheduler off) on free ports — the same ``System`` as ``make demo`` — and
seeds the people of a small team through the public API: an admin, a manager, two reps (an
allocation rule deals the team's form leads to the first rep), a service rep (``service``: a ticket
rule dispatches the team's tickets to them), bind codes for the staff, and the
team's public form. It prints one line ``SIM_BACKEND {json}`` (base URLs, usernames, passwords, ids,
bind codes, the form) and serves a small control API for the tests on ``control`` (below). It stops
everything when its standard input closes (the test process ended) or on SIGTERM.

Control API (JSON over HTTP, for tests only; the mini-program never sees it):

* ``POST /expired-token {"access_token"}`` → ``{"access_token"}``: the same claims, signed with the
  server's key, but expired 10 minutes ago (what a phone holds after a night in a pocket).
* ``POST /run-job {"name", "now"?}`` → the job's answer (``python -m server run-job``).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from miniprogram_stub.client import Client
from miniprogram_stub.demo import System, cli
from miniprogram_stub.journey import DEMO_FORM_FIELDS

PASSWORD = "sim-pass-123456"


def seed(system: System) -> dict:
    tag = uuid.uuid4().hex[:6]
    admin_name = f"sim-admin-{tag}"
    cli(system.env, "create-user", "--username", admin_name, "--password", PASSWORD, "--role", "admin", "--name", "管理员")
    admin = Client(system.base_url, name="admin")
    admin.password_login(admin_name, PASSWORD)
    team = admin.create("/api/v1/teams", {"name": f"华东一组-{tag}"}, what="create team")

    def staff(key: str, name: str, role: str, **extra) -> dict:
        user = admin.create("/api/v1/users", {"username": f"sim-{key}-{tag}", "password": PASSWORD, "name": name, "role": role,
                                              "team_id": team["id"], **extra}, what=f"create {key}")
        bind = admin.create(f"/api/v1/users/{user['id']}/bind-code", None, what=f"bind code for {key}")
        return {"id": user["id"], "username": user["username"], "password": PASSWORD, "name": name, "role": role,
                "bind_code": bind["code"], "openid": f"o-sim-{key}-{tag}"}

    people = {
        "manager": staff("manager", "李经理", "manager"),
        "rep": staff("rep", "张销售", "rep"),
        "rep2": staff("rep2", "王销售", "rep"),
        "service": staff("service", "赵售后", "rep", service=True),
    }
    form = admin.create("/api/v1/forms", {
        "slug": f"expo-{tag}", "title": "展会咨询登记", "team_id": team["id"], "default_tags": ["展会"],
        "fields": DEMO_FORM_FIELDS,
    }, what="create form")
    admin.create("/api/v1/allocation-rules", {"name": f"展会线索-{tag}", "team_id": team["id"], "strategy": "round_robin",
                                              "members": [people["rep"]["id"]]}, what="create allocation rule")
    admin.create("/api/v1/allocation-rules", {"name": f"售后工单-{tag}", "team_id": team["id"], "kind": "ticket", "strategy": "round_robin",
                                              "members": [people["service"]["id"]]}, what="create ticket rule")
    return {
        "tag": tag,
        "admin": {"id": admin.me["id"], "username": admin_name, "password": PASSWORD},
        "team": {"id": team["id"], "name": team["name"]},
        **people,
        "customer": {"openid": f"o-sim-customer-{tag}"},
        "form": {"id": form["id"], "slug": form["slug"], "title": form["title"]},
    }


def control_server(system: System) -> ThreadingHTTPServer:
    from config.settings import Settings
    from server.security import Tokens

    tokens = Tokens(Settings())  # development settings: the same keys as the server it started

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _answer(self, status: int, body: dict) -> None:
            data = json.dumps(body, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            try:
                if self.path == "/expired-token":
                    claims = tokens.decode_access(body["access_token"])
                    past = datetime.now(timezone.utc) - timedelta(seconds=tokens.access_ttl + 600)
                    token = tokens.issue_access(user_id=claims.user_id, role=claims.role, token_version=claims.token_version,
                                                now=past, team_id=claims.team_id)
                    self._answer(200, {"access_token": token})
                elif self.path == "/run-job":
                    args = ["run-job", body["name"]] + (["--now", body["now"]] if body.get("now") else [])
                    self._answer(200, cli(system.env, *args))
                else:
                    self._answer(404, {"error": "unknown control path"})
            except Exception as exc:  # noqa: BLE001 - the test reads the reason
                self._answer(500, {"error": f"{type(exc).__name__}: {exc}"})

    from server.embedded import free_port

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> int:
    # A form lead goes to the rep at once (the demo runs the allocation job itself instead).
    system = System({"MPCRM_DB_NAME": "mpcrm_sim", "MPCRM_ALLOCATE_ON_CAPTURE": "true"})
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    control = None
    try:
        system.start()
        control = control_server(system)
        info = seed(system)
        info.update({
            "base_url": system.base_url,
            "api_base": system.base_url + "/api/v1",
            "wechat_base": system.wechat_base,
            "control": f"http://127.0.0.1:{control.server_address[1]}",
            "mongodb_uri": system.env["MPCRM_MONGODB_URI"],
            "db_name": system.env["MPCRM_DB_NAME"],
        })
        print("SIM_BACKEND " + json.dumps(info, ensure_ascii=False), flush=True)
        # Until the test process closes our stdin (it ended) or sends SIGTERM.
        def stop_at_eof() -> None:
            sys.stdin.read()
            stopping.set()

        threading.Thread(target=stop_at_eof, daemon=True).start()
        stopping.wait()
        return 0
    except Exception as exc:  # noqa: BLE001 - the test prints it
        print(f"SIM_BACKEND_FAILED {type(exc).__name__}: {exc}", flush=True)
        if system.log_path.exists():
            print(system.log_path.read_text(errors="replace")[-2000:], file=sys.stderr, flush=True)
        return 1
    finally:
        if control is not None:
            control.shutdown()
        system.stop()


if __name__ == "__main__":
    sys.exit(main())
