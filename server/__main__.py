"""``python -m server <command>``: run, create-user, ensure-indexes, run-job, seed-demo, rotate-field-key, rebuild-stats.

Start-up is a chain of small steps (settings → logging → database → context → app → server), and
shutdown undoes them in reverse: stop accepting requests, let in-flight ones finish, stop the
scheduler, close the client, stop the fake WeChat API and the embedded database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import logging
import signal
import sys
from datetime import datetime
from urllib.parse import urlparse

from tornado.httpserver import HTTPServer

from config.settings import Settings, SettingsError, load_settings
from server.actor import Actor
from server.app import make_app, server_options
from server.context import build_context
from server.db import connect, ensure_indexes
from server.embedded import DataDirInUse, EmbeddedError, EmbeddedMongo, Supervisor, running_uri
from server.errors import ApiError
from server.logs import configure_logging

log = logging.getLogger("mpcrm")
CLI_ADMIN = Actor(id="cli", role="admin", name="command line")


class StartupError(RuntimeError):
    pass


@contextlib.asynccontextmanager
async def open_database(settings: Settings, *, serving: bool = False):
    """Connect to MPCRM_MONGODB_URI, or start the embedded server on the data folder first.

    Yields ``(database, supervisor)``. For ``run`` (``serving``) the embedded server is watched and
    restarted by a ``Supervisor``, and a data folder already in use is refused. Any other command
    started while ``run`` holds the folder uses that server's database (found through
    ``<data_dir>/db/embedded.json``), so the CLI works beside a running server."""
    embedded = supervisor = None
    if settings.mongodb_uri is None:  # settings.embedded
        embedded = EmbeddedMongo(settings.data_dir, settings.embedded_port)
        try:
            await asyncio.to_thread(embedded.start)
        except DataDirInUse:
            if serving:
                raise
            embedded = None
            uri = await asyncio.to_thread(running_uri, settings.data_dir)
            log.info("using the embedded database of the running server", extra={"data_dir": str(settings.data_dir), "uri": uri})
        else:
            log.info("embedded database started", extra={"data_dir": str(embedded.db_dir), "port": embedded.port})
            uri = embedded.uri
            if serving:
                supervisor = Supervisor(embedded, max_restarts=settings.embedded_restart_max, window_s=settings.embedded_restart_window_s)
                supervisor.start()
    else:
        uri = settings.mongodb_uri.get_secret_value()
    database = connect(uri, settings)
    try:
        yield database, supervisor
    finally:
        if supervisor is not None:
            await supervisor.stop()
        await database.close()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
            log.info("embedded database stopped")


async def upgrade_data(ctx) -> None:
    """Bring documents written by an older build up to date (each owner its own; idempotent)."""
    upgraded = await ctx.contracts.upgrade_pending()
    if upgraded:
        log.info("pending contracts kept with their named approvers", extra={"contracts": upgraded})
    stamped = await ctx.leads.upgrade_activity_order()
    if stamped:
        log.info("leads given their activity order (updated_ms)", extra={"leads": stamped})
    money = await ctx.contracts.upgrade_money_events()
    if money:
        log.info("money events written for contracts from before the revenue counters (the fold counts them)", extra={"events": money})


@contextlib.asynccontextmanager
async def open_context(settings: Settings):
    async with open_database(settings) as (database, _):
        await ensure_indexes(database.db)
        ctx = build_context(settings, database)
        await upgrade_data(ctx)
        yield ctx


async def serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    stub_server = None
    if settings.start_wechat_stub:
        from miniprogram_stub.wechat_api import StubState, start_stub

        stub_url = urlparse(settings.wechat_api_base)
        try:
            stub_server, _ = await start_stub(
                host=stub_url.hostname or "127.0.0.1", port=stub_url.port or 8100,
                state=StubState(appid=settings.wechat_appid, secret=settings.wechat_secret.get_secret_value()),
            )
        except OSError as exc:
            raise StartupError(f"the fake WeChat API cannot listen on {settings.wechat_api_base} ({exc.strerror}); is mpcrm already running?") from None
        log.info("fake WeChat API listening", extra={"url": settings.wechat_api_base})
    lost = False
    try:
        async with open_database(settings, serving=True) as (database, supervisor):
            await ensure_indexes(database.db)
            ctx = build_context(settings, database)
            await upgrade_data(ctx)
            app = make_app(ctx)
            if supervisor is not None:
                app.settings["database_status"] = supervisor.status  # /readyz tells "restarting"
            server = HTTPServer(app, **server_options(settings))
            try:
                server.listen(settings.port, settings.host)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise StartupError(f"port {settings.port} is already in use; is mpcrm already running? Set MPCRM_PORT to another port.") from None
                raise
            scheduler = None
            if settings.scheduler == "on":
                from jobs.scheduler import build_scheduler

                scheduler = build_scheduler(ctx)
                scheduler.start()
            log.info("mpcrm listening", extra={"url": f"http://{settings.host}:{settings.port}", "env": settings.env, "scheduler": settings.scheduler})
            waits = [asyncio.ensure_future(stop.wait())]
            if supervisor is not None:
                waits.append(asyncio.ensure_future(supervisor.failed.wait()))
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for waiting in waits:
                waiting.cancel()
            lost = supervisor is not None and supervisor.failed.is_set()
            log.info("shutting down")
            server.stop()
            if scheduler is not None:
                scheduler.shutdown(wait=False)
            # Give in-flight requests a moment to finish their writes before the database goes.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.close_all_connections(), timeout=10)
    finally:
        if stub_server is not None:
            stub_server.stop()
    log.info("stopped")
    if lost:
        raise StartupError(f"the embedded database kept dying and could not be restarted; see {settings.data_dir.resolve() / 'db' / 'nx-27017.out'}")


async def create_user(settings: Settings, args: argparse.Namespace) -> dict:
    from server.schemas.users import TeamCreate, UserCreate

    async with open_context(settings) as ctx:
        team_id = None
        if args.team:
            team = await ctx.users.team_by_name(args.team)
            if team is None:
                team = await ctx.users.create_team(CLI_ADMIN, TeamCreate(name=args.team))
            team_id = str(team["_id"])
        user = await ctx.users.create_user(
            CLI_ADMIN,
            UserCreate.model_validate({"username": args.username, "password": args.password, "name": args.name or args.username, "role": args.role, "team_id": team_id}),
        )
        return {"id": str(user["_id"]), "username": user["username"], "role": user["role"], "team_id": team_id}


async def run_job_command(settings: Settings, name: str, now: datetime | None) -> dict:
    from jobs.registry import get_job, load_jobs, run_job

    load_jobs()
    get_job(name)  # an unknown name is refused before the database is opened
    async with open_context(settings) as ctx:
        return await run_job(ctx, name, now)


async def rebuild_stats_command(settings: Settings) -> dict:
    """Recompute the report counters from leads and lead_events, under the fold job's lease."""
    from jobs.registry import JOBS, load_jobs

    load_jobs()
    async with open_context(settings) as ctx:
        leases = ctx.lease_service()
        if not await leases.acquire("job:fold_stats", max(JOBS["fold_stats"].lease_s, 3600)):
            raise StartupError("the fold_stats job is running elsewhere; try again in a minute")
        try:
            return await ctx.stats.rebuild(ctx.clock.now())
        finally:
            await leases.release("job:fold_stats")


async def ensure_indexes_command(settings: Settings) -> list[str]:
    async with open_database(settings) as (database, _):
        return await ensure_indexes(database.db)


async def rotate_field_key_command(settings: Settings) -> dict:
    from server.services.keys import rotate_field_key

    async with open_context(settings) as ctx:
        return {"key_version": ctx.cipher.current_version, "re_encrypted": await rotate_field_key(ctx.leads, ctx.users, ctx.cipher)}


async def seed_demo_command(settings: Settings) -> dict:
    from server.seed import seed_demo

    async with open_context(settings) as ctx:
        return await seed_demo(ctx)


def _parse_now(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError("--now needs a UTC offset, e.g. 2026-11-23T09:00:00+08:00")
    return parsed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m server", description="mpcrm backend")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="serve the API (and scheduler, embedded DB, fake WeChat in development)")
    cu = sub.add_parser("create-user", help="create a staff user (and the team if it does not exist)")
    cu.add_argument("--username", required=True)
    cu.add_argument("--password", required=True)
    cu.add_argument("--role", required=True, choices=["rep", "manager", "admin"])
    cu.add_argument("--team", help="team name; created when missing")
    cu.add_argument("--name")
    sub.add_parser("ensure-indexes", help="create every index declared in server/db.py")
    rj = sub.add_parser("run-job", help="run one scheduled job once, now or as of --now")
    rj.add_argument("name")
    rj.add_argument("--now", type=_parse_now)
    sub.add_parser("seed-demo", help="create demo teams, users and their leads (safe to run twice)")
    sub.add_parser("rebuild-stats", help="recompute every report counter from leads and lead_events")
    sub.add_parser("rotate-field-key", help="re-encrypt personal fields under MPCRM_FIELD_KEY_VERSION")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        settings = load_settings()
    except (SettingsError, ValueError) as exc:
        print(f"mpcrm: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "run":
            asyncio.run(serve(settings))
            return 0
        if args.command == "create-user":
            result = asyncio.run(create_user(settings, args))
        elif args.command == "ensure-indexes":
            result = {"indexes": asyncio.run(ensure_indexes_command(settings))}
        elif args.command == "run-job":
            result = asyncio.run(run_job_command(settings, args.name, args.now))
        elif args.command == "rebuild-stats":
            result = asyncio.run(rebuild_stats_command(settings))
        elif args.command == "rotate-field-key":
            result = asyncio.run(rotate_field_key_command(settings))
        else:
            result = asyncio.run(seed_demo_command(settings))
    except (StartupError, EmbeddedError) as exc:
        print(f"mpcrm: {exc}", file=sys.stderr)
        return 1
    except ApiError as exc:
        print(f"mpcrm: {exc.code}: {exc.message('en')} {json.dumps(exc.details, ensure_ascii=False)}", file=sys.stderr)
        return 1
    print(json.dumps(result, ensure_ascii=False, default=str, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
