"""``python -m server run`` in a child process, for the tools that drive a whole server from the
outside (``make demo``, ``make fuzz``): start it, wait until ``/readyz`` answers, stop it."""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start_server(python: str, env: dict[str, str], base_url: str, log_path: Path, *, timeout_s: float = 60) -> subprocess.Popen:
    """The server, once ``/readyz`` answers 200. ``RuntimeError`` with the log's tail when it exits
    or is not ready in time (the process is stopped first)."""
    with open(log_path, "wb") as log:
        server = subprocess.Popen([python, "-m", "server", "run"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode} at start-up:\n{log_path.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(base_url + "/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return server
        except OSError:
            time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"the server did not become ready within {timeout_s:.0f} s")


def stop_server(server: subprocess.Popen | None, *, timeout_s: float = 20) -> None:
    """SIGTERM (a clean stop: HTTP server, scheduler, fake WeChat, database), then kill if it hangs."""
    if server is None or server.poll() is not None:
        return
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
