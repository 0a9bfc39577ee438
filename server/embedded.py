"""Start and stop the embedded MongoDB wire-protocol server (nx-27017) as a child process.

Used by ``python -m server run`` when ``MPCRM_MONGODB_URI`` is unset, and by the test suite. The
server keeps one SQLite file per database inside ``<data_dir>/db``; its log and pid files live there
too (its defaults are fixed paths in the system temp folder).

While it runs, ``<data_dir>/db/embedded.json`` says where it listens, so commands started beside a
running ``run`` (``create-user``, ``run-job`` …) use that database instead of refusing
(``running_uri``). ``Supervisor`` restarts a server that died, with back-off.
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from pymongo import MongoClient
from pymongo.errors import PyMongoError

log = logging.getLogger("mpcrm")

STATE_FILE = "embedded.json"
LOCK_FILE = "embedded.lock"


class EmbeddedError(RuntimeError):
    pass


class AlreadyRunning(EmbeddedError):
    pass


class DataDirInUse(AlreadyRunning):
    """Another process holds the data folder's lock: its embedded database may be used (``running_uri``)."""


def _nx_executable() -> str:
    beside = Path(sys.executable).with_name("nx-27017")
    if beside.exists():
        return str(beside)
    found = shutil.which("nx-27017")
    if not found:
        raise EmbeddedError("nx-27017 is not installed; run `make install` (it is in requirements.txt)")
    return found


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: ask the kernel to SIGTERM the child when its parent dies, so no orphan survives a crash."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    os.setsid()


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class EmbeddedMongo:
    """One nx-27017 process on ``data_dir``. ``start()`` returns once ``ping`` answers."""

    def __init__(self, data_dir: Path, port: int, host: str = "127.0.0.1") -> None:
        self.data_dir = Path(data_dir).resolve()
        self.db_dir = self.data_dir / "db"
        self.host = host
        self.port = port
        self.process: subprocess.Popen | None = None
        self._lock_file: TextIO | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://{self.host}:{self.port}/?directConnection=true"

    def _take_lock(self) -> None:
        self.db_dir.mkdir(parents=True, exist_ok=True)
        lock_path = self.db_dir / LOCK_FILE
        handle = open(lock_path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise DataDirInUse(
                f"the embedded database in {self.db_dir} is already in use by {owner}; "
                "is mpcrm already running? Stop it first, or set MPCRM_DATA_DIR to another folder."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._lock_file = handle

    def start(self, timeout_s: float = 30.0) -> str:
        self._take_lock()
        try:
            return self._spawn(timeout_s)
        except BaseException:
            self._release_lock()
            raise

    def restart(self, timeout_s: float = 30.0) -> str:
        """Start the server again on the same port and data folder after it died; the folder's lock
        stays ours throughout."""
        if self._lock_file is None:
            raise EmbeddedError("restart() needs a server started by start()")
        self._kill_child()
        return self._spawn(timeout_s)

    def _spawn(self, timeout_s: float) -> str:
        self._clear_state()
        if port_in_use(self.host, self.port):
            raise AlreadyRunning(
                f"port {self.port} is already taken, so the embedded database cannot start; "
                "is mpcrm already running? Set MPCRM_EMBEDDED_PORT to another port."
            )
        out = open(self.db_dir / "nx-27017.out", "ab")
        cmd = [
            _nx_executable(),
            "--data-dir", str(self.db_dir),
            "--host", self.host,
            "--port", str(self.port),
            "--log-file", str(self.db_dir / "nx-27017.log"),
            "--pid-file", str(self.db_dir / "nx-27017.pid"),
        ]
        self.process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        out.close()
        deadline = time.monotonic() + timeout_s
        client: MongoClient[dict[str, Any]] = MongoClient(self.uri, serverSelectionTimeoutMS=500)
        try:
            while True:
                if self.process.poll() is not None:
                    raise EmbeddedError(f"nx-27017 exited with {self.process.returncode}; see {self.db_dir}/nx-27017.out")
                try:
                    client.admin.command("ping")
                    self._write_state()
                    return self.uri
                except PyMongoError:
                    if time.monotonic() > deadline:
                        self._kill_child()
                        raise EmbeddedError(f"nx-27017 did not answer ping within {timeout_s:.0f} s") from None
                    time.sleep(0.1)
        finally:
            client.close()

    def _write_state(self) -> None:
        """Where this server listens, for commands run beside it (``running_uri``)."""
        state = {"host": self.host, "port": self.port, "pid": os.getpid(), "nx_pid": self.process.pid if self.process else None}
        tmp = self.db_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self.db_dir / STATE_FILE)

    def _clear_state(self) -> None:
        (self.db_dir / STATE_FILE).unlink(missing_ok=True)

    def _kill_child(self) -> None:
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit; SQLite's WAL keeps committed writes either way."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._lock_file is not None:
            self._clear_state()
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def __enter__(self) -> EmbeddedMongo:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def running_uri(data_dir: Path, timeout_s: float = 15.0) -> str:
    """The URI of the embedded database another process (``python -m server run``) runs on
    ``data_dir``: its folder lock is held, ``embedded.json`` names the port, and ``ping`` answers.
    Waits up to ``timeout_s`` for a server that is starting or being restarted."""
    db_dir = Path(data_dir).resolve() / "db"
    deadline = time.monotonic() + timeout_s
    while True:
        if not _lock_is_held(db_dir / LOCK_FILE):
            raise EmbeddedError(f"no running server holds {db_dir}")
        try:
            state = json.loads((db_dir / STATE_FILE).read_text())
            uri = f"mongodb://{state['host']}:{int(state['port'])}/?directConnection=true"
            client: MongoClient[dict[str, Any]]
            with MongoClient(uri, serverSelectionTimeoutMS=500) as client:
                client.admin.command("ping")
            return uri
        except (OSError, ValueError, KeyError, PyMongoError):
            if time.monotonic() > deadline:
                raise EmbeddedError(
                    f"the embedded database in {db_dir} is in use by a running server, but it does not answer; "
                    "try again in a moment, or set MPCRM_MONGODB_URI"
                ) from None
            time.sleep(0.2)


def _lock_is_held(lock_path: Path) -> bool:
    if not lock_path.exists():
        return False
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


class Supervisor:
    """Watches the embedded database that ``run`` started. When the process dies (``kill -9``, a
    crash) it logs a warning, reports ``restarting`` (``/readyz`` answers 503 with that reason) and
    starts it again on the same port and data folder with back-off (0.5 s, 1 s, 2 s … at most
    30 s). When that fails ``max_restarts`` times, or the database has been restarted that often
    within ``window_s``, it gives up: the state is ``failed`` and ``failed`` is set, so ``run``
    exits non-zero and a process manager can act."""

    def __init__(self, embedded: EmbeddedMongo, *, max_restarts: int = 5, window_s: float = 300.0, poll_s: float = 0.5, start_timeout_s: float = 20.0) -> None:
        self.embedded = embedded
        self.max_restarts = max_restarts
        self.window_s = window_s
        self.poll_s = poll_s
        self.start_timeout_s = start_timeout_s
        self.state = "running"
        self.failed = asyncio.Event()
        self._restarts: list[float] = []
        self._task: asyncio.Task | None = None

    def status(self) -> str:
        """``running``, ``restarting`` or ``failed``; a process that has just died is ``restarting``
        at once, before the next poll notices."""
        proc = self.embedded.process
        if self.state == "running" and (proc is None or proc.poll() is not None):
            return "restarting"
        return self.state

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        """Stop watching (before the database is stopped on purpose)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            proc = self.embedded.process
            code = proc.poll() if proc is not None else -1
            if code is None:
                continue
            self.state = "restarting"
            log.warning("embedded database exited; restarting it", extra={"returncode": code, "port": self.embedded.port, "data_dir": str(self.embedded.db_dir)})
            if not await self._restart():
                self.state = "failed"
                log.error(
                    "embedded database could not be kept running; stopping",
                    extra={"restarts": len(self._restarts), "window_s": self.window_s, "data_dir": str(self.embedded.db_dir)},
                )
                self.failed.set()
                return
            self.state = "running"

    async def _restart(self) -> bool:
        delay = 0.5
        for attempt in range(1, self.max_restarts + 1):
            now = time.monotonic()
            self._restarts = [t for t in self._restarts if now - t < self.window_s]
            if len(self._restarts) >= self.max_restarts:
                return False  # it keeps dying: restarting again would only hide that
            await asyncio.sleep(delay)
            self._restarts.append(time.monotonic())
            try:
                await asyncio.to_thread(self.embedded.restart, self.start_timeout_s)
            except EmbeddedError as exc:
                delay = min(delay * 2, 30.0)
                log.warning("embedded database restart failed", extra={"attempt": attempt, "error": str(exc), "retry_in_s": delay})
                continue
            log.warning("embedded database restarted", extra={"attempt": attempt, "port": self.embedded.port})
            return True
        return False
