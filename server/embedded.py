"""Start and stop the embedded MongoDB wire-protocol server (nx-27017) as a child process.

Used by ``python -m server run`` when ``MPCRM_MONGODB_URI`` is unset, and by the test suite. The
server keeps one SQLite file per database inside ``<data_dir>/db``; its log and pid files live there
too (its defaults are fixed paths in the system temp folder).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError


class EmbeddedError(RuntimeError):
    pass


class AlreadyRunning(EmbeddedError):
    pass


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
        self._lock_file = None

    @property
    def uri(self) -> str:
        return f"mongodb://{self.host}:{self.port}/?directConnection=true"

    def _take_lock(self) -> None:
        self.db_dir.mkdir(parents=True, exist_ok=True)
        lock_path = self.db_dir / "embedded.lock"
        handle = open(lock_path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise AlreadyRunning(
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
        if port_in_use(self.host, self.port):
            self._release_lock()
            raise AlreadyRunning(
                f"port {self.port} is already taken, so the embedded database cannot start; "
                "is mpcrm already running? Set MPCRM_EMBEDDED_PORT to another port."
            )
        log = open(self.db_dir / "nx-27017.out", "ab")
        cmd = [
            _nx_executable(),
            "--data-dir", str(self.db_dir),
            "--host", self.host,
            "--port", str(self.port),
            "--log-file", str(self.db_dir / "nx-27017.log"),
            "--pid-file", str(self.db_dir / "nx-27017.pid"),
        ]
        self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        log.close()
        deadline = time.monotonic() + timeout_s
        client = MongoClient(self.uri, serverSelectionTimeoutMS=500)
        try:
            while True:
                if self.process.poll() is not None:
                    raise EmbeddedError(f"nx-27017 exited with {self.process.returncode}; see {self.db_dir}/nx-27017.out")
                try:
                    client.admin.command("ping")
                    return self.uri
                except PyMongoError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise EmbeddedError(f"nx-27017 did not answer ping within {timeout_s:.0f} s") from None
                    time.sleep(0.1)
        finally:
            client.close()

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
