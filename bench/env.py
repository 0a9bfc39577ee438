"""What every benchmark section stands on: an embedded database with the app's context on it,
a server for an app, targets for the load generator (``bench.load``, its own process), and
progress lines."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymongo
import tornado.web
from pymongo.monitoring import CommandListener
from tornado.httpserver import HTTPServer

from bench.load import Target
from config.settings import Settings
from server.context import AppContext, build_context
from server.db import connect, ensure_indexes
from server.embedded import EmbeddedMongo, free_port
from server.logs import JsonFormatter, configure_logging


@dataclass
class BenchDatabase:
    ctx: AppContext
    setup: pymongo.asynchronous.database.AsyncDatabase
    db_pid: int  # the embedded database's process, for CPU accounting

    def __iter__(self):  # ``async with bench_database(...) as (ctx, setup)``
        return iter((self.ctx, self.setup))


@asynccontextmanager
async def bench_database(tmp: Path, db_name: str, *, timeout_ms: int | None = None,
                         listeners: list[CommandListener] | None = None) -> AsyncIterator[BenchDatabase]:
    """An embedded database in ``tmp``, the app's context on it, and the same database through a
    second client for bulk set-up (bulk writes outlast the app's per-operation timeout). Everything
    is closed and stopped on exit."""
    app_logging(tmp / "app.log")
    mongo = EmbeddedMongo(tmp, free_port())
    mongo.start()
    try:
        values: dict[str, Any] = {"env": "test", "scheduler": "off", "argon2_time_cost": 1, "argon2_memory_kib": 1024}
        if timeout_ms:
            values["db_timeout_ms"] = timeout_ms
        settings = Settings(**values)
        database = connect(mongo.uri, settings, db_name=db_name, listeners=listeners)
        setup_client: pymongo.AsyncMongoClient[dict[str, Any]] = pymongo.AsyncMongoClient(mongo.uri, tz_aware=True)
        try:
            await ensure_indexes(database.db)
            yield BenchDatabase(build_context(settings, database), setup_client[db_name], mongo.process.pid if mongo.process else 0)
        finally:
            await setup_client.close()
            await database.close()
    finally:
        mongo.stop()


def app_logging(path: Path) -> None:
    """The app's logging as ``python -m server run`` sets it up (one JSON line per request, masked),
    written to ``path`` instead of the terminal: its cost is part of the app's."""
    configure_logging()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    logging.getLogger().handlers[:] = [handler]


def serve(app: tornado.web.Application) -> tuple[HTTPServer, str]:
    port = free_port()
    server = HTTPServer(app)
    server.listen(port, "127.0.0.1")
    return server, f"http://127.0.0.1:{port}"


def getter(url: str, token: str | None = None) -> Target:
    """What ``run_load`` sends: GET ``url``, as ``token``'s user when given."""
    return Target(url, {"Authorization": f"Bearer {token}"} if token else {})


def log(message: str) -> None:
    print(message, flush=True)
