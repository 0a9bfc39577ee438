"""``python -m fuzz`` (``make fuzz``): schemathesis over ``/openapi.json``, as an admin and as a rep.

1. Starts the real app the way ``make run`` does (``python -m server run``: the embedded database on
   a temporary data folder, the fake WeChat API, the scheduler off) on free ports.
2. Seeds an admin and a rep with ``python -m server create-user`` and logs each in once by password
   (login is throttled: the fuzzer must not lock itself out, so the tokens are reused; an access
   token lives 900 s and each run is bounded well below that).
3. Runs ``st run`` (schemathesis 4, its own venv ``.venv-fuzz``, pinned in requirements-fuzz.txt)
   with every check and every phase (examples, coverage, fuzzing, stateful), once per role, bounded
   by ``--max-examples`` and ``--max-time`` so the whole target stays under five minutes on two cores.
4. Prints a summary (operations, cases, failures by check) and exits non-zero on any failure.

The check settings, and why each narrowing exists, are in ``fuzz/schemathesis.toml``.
Knobs: ``FUZZ_MAX_EXAMPLES`` (per operation, default 12), ``FUZZ_MAX_TIME`` (seconds per role,
default 100), ``FUZZ_WORKERS`` (default 1), ``FUZZ_SEED`` (reproduce a run), ``FUZZ_ROLES``
(default ``rep,admin``), ``FUZZ_KEEP=1`` (keep the temporary folder: server log and reports).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from miniprogram_stub.server_process import start_server, stop_server

ROOT = Path(__file__).resolve().parent.parent
APP_PYTHON = Path(sys.executable)
ST = Path(os.environ.get("FUZZ_ST", ROOT / ".venv-fuzz" / "bin" / "st"))
CONFIG = Path(__file__).resolve().parent / "schemathesis.toml"
HOOKS = Path(__file__).resolve().parent / "hooks.py"
PASSWORD = "fuzz-pass-12345"
USERS = {
    "admin": {"username": "fuzz-admin", "role": "admin", "team": None},
    "rep": {"username": "fuzz-rep", "role": "rep", "team": "fuzz-team"},
}


class FuzzError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class System:
    """``python -m server run`` on a temporary data folder (it starts the embedded DB itself)."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="mpcrm-fuzz-"))
        self.log_path = self.tmp / "server.log"
        self.server: subprocess.Popen | None = None
        port, db_port, wx_port = free_port(), free_port(), free_port()
        base = {k: v for k, v in os.environ.items() if not k.startswith("MPCRM_")}
        self.env = {
            **base,
            "MPCRM_ENV": "development",
            "MPCRM_DATA_DIR": str(self.tmp / "data"),
            "MPCRM_EMBEDDED_PORT": str(db_port),
            "MPCRM_DB_NAME": "mpcrm_fuzz",
            "MPCRM_PORT": str(port),
            "MPCRM_WECHAT_API_BASE": f"http://127.0.0.1:{wx_port}",
            "MPCRM_WECHAT_STUB": "true",
            "MPCRM_SCHEDULER": "off",
            # Hashing cost is not under test here; the default cost would spend the time budget on argon2.
            "MPCRM_ARGON2_TIME_COST": "1",
            "MPCRM_ARGON2_MEMORY_KIB": "8192",
            # The upload throttle and quota are tested in tests/security/test_upload_probes.py; here every
            # generated POST /uploads must reach the content checks instead of a 429 after the 60th.
            "MPCRM_ATTACHMENT_RATE_LIMIT": "1000000",
            "MPCRM_ATTACHMENT_UNATTACHED_QUOTA": "1000000",
            "PYTHONPATH": str(ROOT),
        }
        # The CLI commands talk to the database the server started (a second embedded server on
        # the same folder would refuse: "already in use").
        self.cli_env = {**self.env, "MPCRM_MONGODB_URI": f"mongodb://127.0.0.1:{db_port}/?directConnection=true"}
        self.base_url = f"http://127.0.0.1:{port}"

    def start(self) -> None:
        try:
            self.server = start_server(str(APP_PYTHON), self.env, self.base_url, self.log_path)
        except RuntimeError as exc:
            raise FuzzError(str(exc)) from None

    def stop(self) -> None:
        stop_server(self.server)

    def create_user(self, username: str, role: str, team: str | None) -> None:
        args = [str(APP_PYTHON), "-m", "server", "create-user", "--username", username, "--password", PASSWORD, "--role", role]
        if team:
            args += ["--team", team]
        proc = subprocess.run(args, cwd=ROOT, env=self.cli_env, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise FuzzError(f"create-user {username} exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-1500:]}")

    def login(self, username: str) -> str:
        body = json.dumps({"username": username, "password": PASSWORD}).encode()
        req = urllib.request.Request(self.base_url + "/api/v1/auth/password-login", data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())["access_token"]
        except urllib.error.HTTPError as exc:
            raise FuzzError(f"login as {username} answered {exc.code}: {exc.read()[:500]!r}") from None


def run_schemathesis(system: System, role: str, token: str) -> tuple[int, dict]:
    max_examples = os.environ.get("FUZZ_MAX_EXAMPLES", "12")
    max_time = os.environ.get("FUZZ_MAX_TIME", "100")
    # One worker: with two, hypothesis's lambda-source cache raced in a worker thread ("AST constructor
    # recursion depth mismatch", a tool error, not an API finding); the server has the other core.
    workers = os.environ.get("FUZZ_WORKERS", "1")
    report = system.tmp / f"report-{role}.json"
    args = [
        str(ST), "--config-file", str(CONFIG), "--no-color", "run", f"{system.base_url}/openapi.json",
        # Every check; positive_data_acceptance and negative_data_rejection are replaced by the same
        # checks with documented exemptions for rules a schema cannot state (fuzz/hooks.py).
        "--checks", "all", "--exclude-checks", "positive_data_acceptance,negative_data_rejection",
        "--phases", "examples,coverage,fuzzing,stateful",
        "--max-examples", max_examples,
        "--max-time", max_time,
        "--workers", workers,
        "--header", f"Authorization: Bearer {token}",
        "--header", f"X-Request-Id: fuzz-{role}",
        "--generation-database", "none",
        "--report", "json", "--report-dir", str(system.tmp / "reports"), "--report-json-path", str(report),
    ]
    if os.environ.get("FUZZ_SEED"):
        args += ["--seed", os.environ["FUZZ_SEED"]]
    print(f"\n=== schemathesis as {role}: max {max_examples} examples per operation, {max_time} s, {workers} workers ===", flush=True)
    started = time.monotonic()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPCRM_")}
    env["SCHEMATHESIS_HOOKS"] = str(HOOKS)
    env["FUZZ_HOOK_LOG"] = str(system.tmp / f"rejected-{role}.jsonl")
    proc = subprocess.run(args, cwd=system.tmp, env=env)
    elapsed = time.monotonic() - started
    data: dict = {}
    if report.exists():
        try:
            data = json.loads(report.read_text())
        except ValueError:
            data = {}
    data["_elapsed_s"] = round(elapsed, 1)
    rejected = system.tmp / f"rejected-{role}.jsonl"
    data["_rejected"] = [json.loads(line) for line in rejected.read_text().splitlines()] if rejected.exists() else []
    return proc.returncode, data


def summarize(role: str, code: int, data: dict) -> list[str]:
    """One line per role, then the failures by check (from schemathesis's JSON report)."""
    ops = data.get("operations") or {}
    cases = data.get("test_cases") or {}
    failures = data.get("failures") or []
    verdict = "ok" if code == 0 else f"FAILED (st exit {code})"
    lines = [
        f"{role}: {verdict} in {data.get('_elapsed_s', '?')} s; operations tested {ops.get('tested', '?')}/{ops.get('selected', '?')}, "
        f"cases {cases.get('generated', '?')}, unique failures {cases.get('unique_failures', 0)}, errors {len(data.get('errors') or [])}"
    ]
    for failure in failures:
        where = ", ".join(failure.get("operations") or [])
        lines.append(f"    {failure.get('code', '?')} {failure.get('title', '?')}: {failure.get('count', '?')} ({where})")
    reasons: dict[str, int] = {}
    for item in data.get("_rejected") or []:
        codes = sorted({f"{d['field']}: {d['code']}" for d in item["details"]}) or [""]
        key = f"{item['operation']} → {item['status']} {item['code']} {', '.join(codes)}".strip()
        reasons[key] = reasons.get(key, 0) + 1
    for key, n in sorted(reasons.items()):
        lines.append(f"      valid data refused, not excused ({n}×): {key[:300]}")
    for error in data.get("errors") or []:
        lines.append(f"    error: {str(error)[:300]}")
    return lines


def server_errors(log_path: Path) -> list[str]:
    """Each unhandled error the server logged (its JSON log lines): where it was raised and what."""
    found = []
    if not log_path.exists():
        return found
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") != "error" or not entry.get("exc"):
            continue
        frames = [f.strip() for f in entry["exc"].splitlines() if f.strip().startswith('File "') and "/site-packages/" not in f]
        last = entry["exc"].strip().splitlines()[-1]
        found.append(f"{(frames[-1] if frames else '?')[:160]} → {last[:240]}")
    return found


def main() -> int:
    if not ST.exists():
        print(f"fuzz: {ST} not found; run `make fuzz` (it installs requirements-fuzz.txt into .venv-fuzz)", file=sys.stderr)
        return 2
    roles = [r.strip() for r in os.environ.get("FUZZ_ROLES", "rep,admin").split(",") if r.strip()]
    system = System()
    started = time.monotonic()
    results: list[tuple[str, int, dict]] = []
    try:
        system.start()
        print(f"fuzz: API {system.base_url} (embedded DB and fake WeChat from `python -m server run`, scheduler off), data in {system.tmp}", flush=True)
        tokens = {}
        for role in roles:
            user = USERS[role]
            system.create_user(user["username"], user["role"], user["team"])
            tokens[role] = system.login(user["username"])
        for role in roles:
            code, data = run_schemathesis(system, role, tokens[role])
            results.append((role, code, data))
            if system.server.poll() is not None:
                raise FuzzError(f"the server died during the {role} run:\n{system.log_path.read_text()[-3000:]}")
    except FuzzError as exc:
        print(f"fuzz FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        system.stop()
        errors = server_errors(system.log_path)
        if os.environ.get("FUZZ_KEEP"):
            print(f"fuzz: kept {system.tmp}")
        else:
            shutil.rmtree(system.tmp, ignore_errors=True)
    print("\n=== fuzz summary ===")
    for role, code, data in results:
        for line in summarize(role, code, data):
            print(line)
    for error in errors:
        print(f"server error: {error}")
    print(f"total {time.monotonic() - started:.0f} s")
    failed = [role for role, code, _ in results if code != 0]
    if failed:
        print(f"fuzz FAILED for: {', '.join(failed)}")
        return 1
    print("fuzz OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
