"""The embedded nx-27017 server: data survives restarts, one server per data folder, and stopping
it leaves no process behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pymongo import MongoClient

from server.embedded import AlreadyRunning, EmbeddedMongo, free_port, port_in_use


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists()


def test_data_survives_a_restart(tmp_path):
    port = free_port()
    first = EmbeddedMongo(tmp_path, port)
    first.start()
    try:
        with MongoClient(first.uri, tz_aware=True) as client:
            client.crm.notes.insert_many([{"_id": i, "text": f"第{i}条"} for i in range(3)])
    finally:
        first.stop()
    assert not port_in_use("127.0.0.1", port)

    second = EmbeddedMongo(tmp_path, port)
    second.start()
    try:
        with MongoClient(second.uri, tz_aware=True) as client:
            assert list(client.crm.notes.find({}, sort=[("_id", 1)])) == [{"_id": i, "text": f"第{i}条"} for i in range(3)]
    finally:
        second.stop()
    # its log and pid files live in the data folder, not in the system temp folder
    assert (tmp_path / "db" / "nx-27017.log").exists()


def test_second_server_on_the_same_data_dir_is_refused(tmp_path):
    first = EmbeddedMongo(tmp_path, free_port())
    first.start()
    try:
        second = EmbeddedMongo(tmp_path, free_port())
        with pytest.raises(AlreadyRunning) as caught:
            second.start()
        message = str(caught.value)
        assert "already" in message and str(tmp_path.resolve()) in message and "MPCRM_DATA_DIR" in message
        assert second.process is None
        # the first one is unharmed
        with MongoClient(first.uri, serverSelectionTimeoutMS=2000) as client:
            assert client.admin.command("ping")["ok"] == 1
    finally:
        first.stop()
    # once the first has stopped, the folder is free again
    third = EmbeddedMongo(tmp_path, free_port())
    third.start()
    third.stop()


def test_busy_port_is_refused_with_a_clear_message(tmp_path):
    first = EmbeddedMongo(tmp_path / "a", free_port())
    first.start()
    try:
        other = EmbeddedMongo(tmp_path / "b", first.port)
        with pytest.raises(AlreadyRunning, match="MPCRM_EMBEDDED_PORT"):
            other.start()
        # the refused one released its folder lock
        again = EmbeddedMongo(tmp_path / "b", free_port())
        again.start()
        again.stop()
    finally:
        first.stop()


def test_stop_leaves_no_process(tmp_path):
    server = EmbeddedMongo(tmp_path, free_port())
    server.start()
    pid = server.process.pid
    assert _alive(pid)
    server.stop()
    assert not _alive(pid), f"nx-27017 (pid {pid}) is still there"
    assert not port_in_use("127.0.0.1", server.port)
    server.stop()  # stopping twice is harmless
