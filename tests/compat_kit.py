"""Helpers for the conformance tests in tests/compat/: a fresh database on the suite's server per
test (a plain AsyncMongoClient, not recorded or index-checked), and ``known_gap`` which marks a test
``xfail(strict=True)`` only when that server is nx-27017, so on a real MongoDB it must pass."""

from __future__ import annotations

import uuid

import pytest
from pymongo import AsyncMongoClient, MongoClient


@pytest.fixture(scope="session")
def server_is_nx(mongo_uri) -> bool:
    with MongoClient(mongo_uri, serverSelectionTimeoutMS=5000) as client:
        info = client.admin.command("buildInfo")
    return "nx" in str(info.get("process", "")).lower()


@pytest.fixture
def db(io_loop, mongo_uri):
    client = AsyncMongoClient(mongo_uri, tz_aware=True)
    name = f"compat_{uuid.uuid4().hex[:12]}"
    yield client[name]

    async def done() -> None:
        await client.drop_database(name)
        await client.close()

    io_loop.run_sync(done)


@pytest.fixture
def known_gap(request, server_is_nx):
    """``known_gap("…")`` inside a test: on nx-27017 the test must fail (strict xfail) with that
    documented reason; elsewhere it must pass. Every reason is listed in docs/mongodb-compat.md."""

    def mark(reason: str) -> None:
        if server_is_nx:
            request.node.add_marker(pytest.mark.xfail(strict=True, reason=f"nx-27017 gap: {reason}, see docs/mongodb-compat.md"))

    return mark
