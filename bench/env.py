"""What every benchmark section stands on: an embedded database with the app's context on it,
a server for an app, request makers for the load generator, and progress lines."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pymongo
import tornado.web
from pymongo.monitoring import CommandListener
from tornado.httpclient import HTTPRequest
from tornado.httpserver import HTTPServer

from config.settings import Settings
from server.context import AppContext, build_context
from server.db import connect, ensure_indexes
from server.embedded import EmbeddedMongo, free_port


@asynccontextmanager
async def bench_database(tmp: Path, db_name: str, *, timeout_ms: int | None = None,
                         listeners: list[CommandListener] | None = None) -> AsyncIterator[tuple[AppContext, pymongo.asynchronous.database.AsyncDatabase]]:
    """An embedded database in ``tmp``, the app's context on it, and the same database through a
    second client for bulk set-up (bulk writes outlast the app's per-operation timeout). Everything
    is closed and stopped on exit."""
    mongo = EmbeddedMongo(tmp, free_port())
    mongo.start()
    try:
        extra = {"db_timeout_ms": timeout_ms} if timeout_ms else {}
        settings = Settings(env="test", scheduler="off", argon2_time_cost=1, argon2_memory_kib=1024, **extra)
        database = connect(mongo.uri, settings, db_name=db_name, listeners=listeners)
        setup_client = pymongo.AsyncMongoClient(mongo.uri, tz_aware=True)
        try:
            await ensure_indexes(database.db)
            yield build_context(settings, database), setup_client[db_name]
        finally:
            await setup_client.close()
            await database.close()
    finally:
        mongo.stop()


def serve(app: tornado.web.Application) -> tuple[HTTPServer, str]:
    port = free_port()
    server = HTTPServer(app)
    server.listen(port, "127.0.0.1")
    return server, f"http://127.0.0.1:{port}"


def getter(url: str, token: str | None = None):
    """A request maker for ``run_load``: GET ``url``, as ``token``'s user when given."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    def make(_: int) -> HTTPRequest:
        return HTTPRequest(url, headers=headers, request_timeout=120)

    return make


def log(message: str) -> None:
    print(message, flush=True)
