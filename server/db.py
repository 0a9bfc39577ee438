"""The MongoDB client, and every index the application relies on, declared in one place.

Index keys follow the equality → sort → range rule. The test suite records every filter and sort
the code sends and fails when one has no index here that serves it (tests/index_check.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.monitoring import CommandListener

from config.settings import Settings


@dataclass(frozen=True)
class IndexSpec:
    collection: str
    keys: tuple[tuple[str, int], ...]
    unique: bool = False
    partial: dict[str, Any] | None = None
    ttl_s: int | None = None
    name: str | None = None

    @property
    def index_name(self) -> str:
        return self.name or "_".join(f"{k}_{d}" for k, d in self.keys)


def _ix(collection: str, *keys: tuple[str, int] | str, **options: Any) -> IndexSpec:
    normal = tuple((k, ASCENDING) if isinstance(k, str) else k for k in keys)
    return IndexSpec(collection, normal, **options)


INDEXES: list[IndexSpec] = [
    # users: login by username or WeChat openid; team listings sorted by _id.
    _ix("users", "username", unique=True, partial={"username": {"$exists": True}}),
    _ix("users", "openid", unique=True, partial={"openid": {"$exists": True}}),
    _ix("users", "team_id", "role", "active"),
    _ix("users", "team_id"),
    _ix("users", "role"),
    _ix("teams", "name", unique=True),
    _ix("teams", "active"),
    # auth
    _ix("refresh_tokens", "family_id"),
    _ix("refresh_tokens", "user_id"),
    _ix("refresh_tokens", "expires_at", ttl_s=0),
    _ix("refresh_tokens", "revoked", "created_at"),
    _ix("bind_codes", "user_id"),
    _ix("bind_codes", "expires_at", ttl_s=0),
    # audit
    _ix("audit_log", "target_id", ("at", DESCENDING)),
    _ix("audit_log", "actor_id", ("at", DESCENDING)),
    _ix("audit_log", "action", ("at", DESCENDING)),
    # forms
    _ix("forms", "slug", unique=True),
    _ix("forms", "team_id"),
    _ix("form_versions", "form_id", "version", unique=True),
    # leads: one per phone (blind index); client-made ids live in _id
    _ix("leads", "phone_bidx", unique=True, partial={"phone_bidx": {"$exists": True}}),
    _ix("leads", "phone.v"),
    _ix("leads", "owner_id", ("updated_at", DESCENDING)),
    _ix("leads", "team_id", ("updated_at", DESCENDING)),
    _ix("leads", ("updated_at", DESCENDING)),
    _ix("leads", "stage", ("updated_at", DESCENDING)),  # admin filters across teams
    _ix("leads", "tags", ("updated_at", DESCENDING)),  # compound only: see docs/mongodb-compat.md
    _ix("leads", "owner_id", "next_followup_at"),
    _ix("leads", "team_id", "next_followup_at"),
    _ix("leads", "next_followup_at"),
    _ix("leads", "team_id", "pool", ("updated_at", DESCENDING)),
    _ix("lead_events", "lead_id", ("at", DESCENDING)),
    _ix("lead_events", "author_id", "kind", ("updated_at", DESCENDING)),
    _ix("lead_events", "customer_id"),
    # spreadsheet imports: progress documents by team and by creator
    _ix("imports", "team_id", ("created_at", DESCENDING)),
    _ix("imports", "status", "heartbeat_at"),
    _ix("imports", "created_by", ("created_at", DESCENDING)),
    # rejected rows' cells for errors.csv (encrypted), gone after 30 days
    _ix("import_rejects", "import_id", "row"),
    _ix("import_rejects", "expires_at", ttl_s=0),
    _ix("leads", "awaiting_allocation", "created_at"),
    _ix("leads", "team_id", "touched_at"),
    _ix("leads", "team_id", "assignment.strategy", "assignment.at"),
    _ix("allocation_rules", "team_id", "active", "priority"),
    _ix("allocation_rules", "team_id"),
    # notifications: inbox by user, outbox by delivery state; one per dedupe key
    _ix("notifications", "dedupe_key", unique=True),
    _ix("notifications", "user_id", "read_at"),
    _ix("notifications", "delivery.state", "delivery.next_attempt_at"),
    _ix("notifications", "delivery.state", "delivery.claim_until"),
    # tasks: scoped lists by due time; the reminder job reads only open tasks whose next rung has come
    _ix("tasks", "assignee_id", "status", "due_at"),
    _ix("tasks", "assignee_id", "due_at"),
    _ix("tasks", "team_id", "status", "due_at"),
    _ix("tasks", "team_id", "due_at"),
    _ix("tasks", "status", "due_at"),
    _ix("tasks", "due_at"),
    _ix("tasks", "status", "reminders.next_at"),
    # churn warnings: customers by stage, silent since last_activity_at
    _ix("leads", "stage", "last_activity_at"),
    # contracts: scoped lists, the approval inbox (multikey), renewal / expiry / payment jobs
    _ix("contracts", "owner_id", "status"),
    _ix("contracts", "team_id", "status"),
    _ix("contracts", "lead_id", "status"),
    _ix("contracts", "status", "end_date"),
    _ix("contracts", "status", "paid", "next_due"),
    _ix("contracts", "current_approvers", "status"),
    _ix("contracts", "current_role", "team_id", "status"),  # the inbox: a step held by a role, decided by whoever holds it now
    _ix("contracts", "payment_ids", "status"),  # compound: a single-field index on an array breaks membership matches on nx-27017
    # reports (issue 8): the fold claims unmarked events, picks up a crashed batch; RFM inputs
    _ix("lead_events", "fold"),
    _ix("lead_events", "fold.state"),
    _ix("lead_events", "fold.batch"),
    _ix("stats_batches", "created_at", ttl_s=7 * 86400),
    _ix("contracts", "status", "start_date"),
    _ix("leads", "layer", ("updated_at", DESCENDING)),  # ?layer=A for admins; scoped lists use owner/team indexes
    # coordination and idempotency
    _ix("idempotency_keys", "expires_at", ttl_s=0),
    _ix("rate_limits", "expires_at", ttl_s=0),
]


@dataclass
class Database:
    """A connected client and the application database."""

    client: AsyncMongoClient
    db: AsyncDatabase
    listeners: list[CommandListener] = field(default_factory=list)

    def __getitem__(self, name: str):
        return self.db[name]

    async def close(self) -> None:
        await self.client.close()


def make_client(uri: str, settings: Settings, listeners: list[CommandListener] | None = None) -> AsyncMongoClient:
    return AsyncMongoClient(
        uri,
        tz_aware=True,
        timeoutMS=settings.db_timeout_ms,
        serverSelectionTimeoutMS=settings.db_server_selection_timeout_ms,
        connectTimeoutMS=min(settings.db_timeout_ms, 3000),
        event_listeners=listeners or [],
        appname="mpcrm",
    )


def connect(uri: str, settings: Settings, db_name: str | None = None, listeners: list[CommandListener] | None = None) -> Database:
    client = make_client(uri, settings, listeners)
    return Database(client=client, db=client[db_name or settings.db_name], listeners=list(listeners or []))


async def ensure_indexes(db: AsyncDatabase, specs: list[IndexSpec] = INDEXES) -> list[str]:
    """Create every declared index, one ``createIndexes`` command per collection; idempotent."""
    by_collection: dict[str, list[IndexModel]] = {}
    names = []
    for spec in specs:
        options: dict[str, Any] = {"name": spec.index_name}
        if spec.unique:
            options["unique"] = True
        if spec.partial is not None:
            options["partialFilterExpression"] = spec.partial
        if spec.ttl_s is not None:
            options["expireAfterSeconds"] = spec.ttl_s
        by_collection.setdefault(spec.collection, []).append(IndexModel(list(spec.keys), **options))
        names.append(f"{spec.collection}.{spec.index_name}")
    for collection, models in by_collection.items():
        await db[collection].create_indexes(models)
    return names


async def ping(db: AsyncDatabase) -> bool:
    await db.command("ping")
    return True
