"""The suite's lane for a real MongoDB: with ``MPCRM_TEST_MONGODB_URI`` set, the tests run against
that server (here an nx-27017 started by hand, as an operator would start a mongod), start no
embedded server of their own, and leave no test database behind; a URI where nothing answers stops
the run at once, naming the URI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pymongo import MongoClient

from server.embedded import EmbeddedMongo, free_port

ROOT = Path(__file__).resolve().parent.parent
# A test that builds the app on a database of its own, and one that uses a plain client's database.
SAMPLE = ["tests/handlers/test_ops.py::test_healthz_and_readyz", "tests/compat/test_filters.py"]


def _pytest(uri: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPCRM_TEST_MONGODB_URI": uri}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )


def test_the_suite_runs_against_the_server_it_is_given_and_cleans_up(tmp_path):
    server = EmbeddedMongo(tmp_path / "by-hand", free_port())
    server.start()
    try:
        basetemp = tmp_path / "run"
        done = _pytest(server.uri, f"--basetemp={basetemp}", *SAMPLE)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        # the suite started no nx-27017 of its own (its data folder would be under basetemp)
        made = sorted(p.name for p in basetemp.iterdir()) if basetemp.exists() else []
        assert not [name for name in made if name.startswith("nx")], made
        with MongoClient(server.uri, serverSelectionTimeoutMS=5000) as client:
            left = [name for name in client.list_database_names() if name.startswith(("t_", "compat_"))]
        assert left == [], f"test databases left on the server: {left}"
    finally:
        server.stop()


def test_a_uri_where_nothing_answers_stops_the_run_naming_it():
    uri = f"mongodb://127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=500"
    done = _pytest(uri, SAMPLE[0])
    assert done.returncode == 3, (done.returncode, done.stdout[-2000:])
    assert "MPCRM_TEST_MONGODB_URI" in done.stdout + done.stderr and uri in done.stdout + done.stderr
