"""The MongoDB client, and every index the application relies on, declared in one place.

Index keys follow the equality → sort → range rule. The test suite records every filter and sort
the code sends and fails when one has no index here that serves it (tests/index_check.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.monitoring import CommandListener

from config.settings import Settings


class Collections:
    """Every collection's name, written once: code says ``C.LEADS``, never ``"leads"``."""

    USERS = "users"
    TEAMS = "teams"
    BIND_CODES = "bind_codes"
    REFRESH_TOKENS = "refresh_tokens"
    AUDIT_LOG = "audit_log"
    FORMS = "forms"
    FORM_VERSIONS = "form_versions"
    LEADS = "leads"
    LEAD_EVENTS = "lead_events"
    IMPORTS = "imports"
    IMPORT_REJECTS = "import_rejects"
    ALLOCATION_RULES = "allocation_rules"
    ALLOCATION_RUNS = "allocation_runs"  # bulk assignments' results, for Idempotency-Key replays
    NOTIFICATIONS = "notifications"
    SUBSCRIPTIONS = "subscriptions"
    TASKS = "tasks"
    CONTRACTS = "contracts"
    STATS_CURRENT = "stats_current"
    STATS_CUM = "stats_cum"
    STATS_OVERDUE = "stats_overdue"
    STATS_LEADS = "stats_leads"
    STATS_BATCHES = "stats_batches"
    STATS_COUNTERS = "stats_counters"
    STATS_RFM = "stats_rfm"
    STATS_MONEY = "stats_money"
    IDEMPOTENCY_KEYS = "idempotency_keys"
    RATE_LIMITS = "rate_limits"
    LEASES = "leases"
    WECHAT_TOKENS = "wechat_tokens"
    TICKETS = "tickets"
    TICKET_REPLIES = "ticket_replies"
    SURVEYS = "surveys"
    HANDOVERS = "handovers"
    UPLOAD_FILES = "uploads.files"  # GridFS bucket "uploads": file documents
    UPLOAD_CHUNKS = "uploads.chunks"  # and their chunks
    UPLOAD_RECORDS = "upload_records"  # who uploaded each file, what it is attached to (see server/services/uploads.py)


C = Collections

# One owner per collection: the only module that writes it (tests/test_architecture.py reads this
# table and the code, and fails when another module writes there). Everyone else reads it through
# a read-only view (``Database.reader``) or, better, asks the owner.
OWNERS: dict[str, str] = {
    C.USERS: "server.services.users",
    C.TEAMS: "server.services.users",
    C.BIND_CODES: "server.services.users",
    C.REFRESH_TOKENS: "server.services.sessions",
    C.AUDIT_LOG: "server.services.audit",
    C.FORMS: "server.services.forms",
    C.FORM_VERSIONS: "server.services.forms",
    C.LEADS: "server.services.lead_store",
    C.LEAD_EVENTS: "server.services.lead_store",
    C.IMPORTS: "server.services.imports",
    C.IMPORT_REJECTS: "server.services.imports",
    C.ALLOCATION_RULES: "server.services.allocation",
    C.ALLOCATION_RUNS: "server.services.allocation",
    C.NOTIFICATIONS: "server.services.notifications",
    C.SUBSCRIPTIONS: "server.services.outbox",
    C.TASKS: "server.services.tasks",
    C.CONTRACTS: "server.services.contracts",
    C.STATS_CURRENT: "server.services.stats",
    C.STATS_CUM: "server.services.stats",
    C.STATS_OVERDUE: "server.services.stats",
    C.STATS_LEADS: "server.services.stats",
    C.STATS_BATCHES: "server.services.stats",
    C.STATS_COUNTERS: "server.services.stats",
    C.STATS_RFM: "server.services.reports",
    C.STATS_MONEY: "server.services.stats",
    C.IDEMPOTENCY_KEYS: "server.services.idempotency",
    C.RATE_LIMITS: "server.services.ratelimit",
    C.LEASES: "server.services.leases",
    C.WECHAT_TOKENS: "server.services.wechat",
    C.TICKETS: "server.services.tickets",
    C.TICKET_REPLIES: "server.services.tickets",
    C.SURVEYS: "server.services.surveys",
    C.HANDOVERS: "server.services.handover",
    C.UPLOAD_FILES: "server.services.uploads",
    C.UPLOAD_CHUNKS: "server.services.uploads",
    C.UPLOAD_RECORDS: "server.services.uploads",
}


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
    _ix(C.USERS, "username", unique=True, partial={"username": {"$exists": True}}),
    _ix(C.USERS, "openid", unique=True, partial={"openid": {"$exists": True}}),
    _ix(C.USERS, "team_id", "role", "active"),
    _ix(C.USERS, "team_id"),
    _ix(C.USERS, "role"),
    _ix(C.TEAMS, "name", unique=True),
    _ix(C.TEAMS, "active"),
    # auth
    _ix(C.REFRESH_TOKENS, "family_id"),
    _ix(C.REFRESH_TOKENS, "user_id"),
    _ix(C.REFRESH_TOKENS, "expires_at", ttl_s=0),
    _ix(C.REFRESH_TOKENS, "revoked", "created_at"),
    _ix(C.BIND_CODES, "user_id"),
    _ix(C.BIND_CODES, "expires_at", ttl_s=0),
    # audit
    _ix(C.AUDIT_LOG, "target_id", ("at", DESCENDING)),
    _ix(C.AUDIT_LOG, "actor_id", ("at", DESCENDING)),
    _ix(C.AUDIT_LOG, "action", ("at", DESCENDING)),
    # forms
    _ix(C.FORMS, "slug", unique=True),
    _ix(C.FORMS, "team_id"),
    _ix(C.FORM_VERSIONS, "form_id", "version", unique=True),
    # leads: one per phone (blind index); client-made ids live in _id
    _ix(C.LEADS, "phone_bidx", unique=True, partial={"phone_bidx": {"$exists": True}}),
    _ix(C.LEADS, "phone.v"),
    # Lists sort on updated_ms, the number written beside updated_at (see server/services/lead_store.py).
    _ix(C.LEADS, "owner_id", ("updated_ms", DESCENDING)),
    _ix(C.LEADS, "team_id", ("updated_ms", DESCENDING)),
    _ix(C.LEADS, ("updated_ms", DESCENDING)),
    _ix(C.LEADS, "stage", ("updated_ms", DESCENDING)),  # admin filters across teams
    _ix(C.LEADS, "tags", ("updated_ms", DESCENDING)),  # compound only: see docs/mongodb-compat.md
    _ix(C.LEADS, "updated_ms"),  # the start-up upgrade finds leads without it
    _ix(C.LEADS, "owner_id", "next_followup_at"),
    _ix(C.LEADS, "team_id", "next_followup_at"),
    _ix(C.LEADS, "next_followup_at"),
    _ix(C.LEADS, "team_id", "pool", ("updated_ms", DESCENDING)),
    _ix(C.LEAD_EVENTS, "lead_id", ("at", DESCENDING)),
    _ix(C.LEAD_EVENTS, "author_id", "kind", ("updated_at", DESCENDING)),
    _ix(C.LEAD_EVENTS, "customer_id"),
    # spreadsheet imports: progress documents by team and by creator
    _ix(C.IMPORTS, "team_id", ("created_at", DESCENDING)),
    _ix(C.IMPORTS, "status", "heartbeat_at"),
    _ix(C.IMPORTS, "created_by", ("created_at", DESCENDING)),
    # rejected rows' cells for errors.csv (encrypted), gone after 30 days
    _ix(C.IMPORT_REJECTS, "import_id", "row"),
    _ix(C.IMPORT_REJECTS, "expires_at", ttl_s=0),
    _ix(C.LEADS, "awaiting_allocation", "created_at"),
    _ix(C.LEADS, "team_id", "touched_at"),
    _ix(C.LEADS, "team_id", "assignment.strategy", "assignment.at"),
    _ix(C.ALLOCATION_RULES, "team_id", "active", "priority"),
    _ix(C.ALLOCATION_RULES, "team_id"),
    # ticket dispatch (server/services/allocation.py): open tickets per handler, for least-loaded
    _ix(C.TICKETS, "assignee_id", "status"),
    _ix(C.ALLOCATION_RUNS, "expires_at", ttl_s=0),
    # notifications: inbox by user, outbox by delivery state; one per dedupe key
    _ix(C.NOTIFICATIONS, "dedupe_key", unique=True),
    _ix(C.NOTIFICATIONS, "user_id", "read_at"),
    _ix(C.NOTIFICATIONS, "delivery.state", "delivery.next_attempt_at"),
    _ix(C.NOTIFICATIONS, "delivery.state", "delivery.claim_until"),
    # tasks: scoped lists by due time; the reminder job reads only open tasks whose next rung has come
    _ix(C.TASKS, "assignee_id", "status", "due_at"),
    _ix(C.TASKS, "assignee_id", "due_at"),
    _ix(C.TASKS, "team_id", "status", "due_at"),
    _ix(C.TASKS, "team_id", "due_at"),
    _ix(C.TASKS, "status", "due_at"),
    _ix(C.TASKS, "due_at"),
    _ix(C.TASKS, "status", "reminders.next_at"),
    # churn warnings: customers by stage, silent since last_activity_at
    _ix(C.LEADS, "stage", "last_activity_at"),
    # contracts: scoped lists, the approval inbox (multikey), renewal / expiry / payment jobs
    _ix(C.CONTRACTS, "owner_id", "status"),
    _ix(C.CONTRACTS, "team_id", "status"),
    _ix(C.CONTRACTS, "lead_id", "status"),
    _ix(C.CONTRACTS, "status", "end_date"),
    _ix(C.CONTRACTS, "status", "paid", "next_due"),
    _ix(C.CONTRACTS, "current_approvers", "status"),
    _ix(C.CONTRACTS, "current_role", "team_id", "status"),  # the inbox: a step held by a role, decided by whoever holds it now
    _ix(C.CONTRACTS, "payment_ids", "status"),  # compound: a single-field index on an array breaks membership matches on nx-27017
    # reports (docs/reports.md): the fold claims unmarked events, picks up a crashed batch; RFM inputs
    _ix(C.LEAD_EVENTS, "fold"),
    _ix(C.LEAD_EVENTS, "fold.state"),
    _ix(C.LEAD_EVENTS, "fold.batch"),
    _ix(C.STATS_BATCHES, "created_at", ttl_s=7 * 86400),
    _ix(C.CONTRACTS, "status", "start_date"),
    _ix(C.LEADS, "layer", ("updated_ms", DESCENDING)),  # ?layer=A for admins; scoped lists use owner/team indexes
    # the win-back list (?winback=true): churned customers who came back, scoped like every lead list
    _ix(C.LEADS, "owner_id", "winback_candidate", ("updated_ms", DESCENDING)),
    _ix(C.LEADS, "team_id", "winback_candidate", ("updated_ms", DESCENDING)),
    _ix(C.LEADS, "winback_candidate", ("updated_ms", DESCENDING)),
    # first-contact deadline (server/services/first_contact.py): leads whose next step has come
    _ix(C.LEADS, "first_contact.due_at"),
    # ?sort=lifetime_value: customers by money received to date (scoped by owner or team, or all)
    _ix(C.LEADS, "owner_id", ("lifetime_value_fen", DESCENDING)),
    _ix(C.LEADS, "team_id", ("lifetime_value_fen", DESCENDING)),
    _ix(C.LEADS, ("lifetime_value_fen", DESCENDING)),
    # surveys (server/services/surveys.py): one per source; the customer's pending ones, staff lists scoped like leads
    _ix(C.SURVEYS, "source", "source_id", unique=True),
    _ix(C.SURVEYS, "customer_id", "status"),
    _ix(C.SURVEYS, "owner_id", "status"),
    _ix(C.SURVEYS, "team_id", "status"),
    _ix(C.SURVEYS, "status"),
    _ix(C.SURVEYS, "lead_id", "status"),  # staff: ?lead_id= (admins have no scope field in front of it)
    # return visits (回访): the lead's open return-visit tasks, completed by a return_visit follow-up
    _ix(C.TASKS, "lead_id", "kind", "status"),
    # attachments: the GridFS bucket's own chunk index (reads sort by n); per-user quota of unattached
    # uploads; the clean-up of unattached ones by age
    _ix(C.UPLOAD_CHUNKS, "files_id", "n", unique=True),
    _ix(C.UPLOAD_RECORDS, "uploader_id", "attached"),
    _ix(C.UPLOAD_RECORDS, "attached", "created_at"),
    # tickets (server/services/tickets.py): scoped lists newest first (by _id) with their filters, a
    # customer's lead, the conversation, the SLA job's next step and the dispatch sweep
    _ix(C.TICKETS, "customer_id", "status"),
    _ix(C.TICKETS, "team_id", "status"),
    _ix(C.TICKETS, "lead_owner_id", "status"),
    _ix(C.TICKETS, "lead_id", "status"),
    _ix(C.TICKETS, "status", "priority"),
    _ix(C.TICKETS, "priority", "category"),
    _ix(C.TICKETS, "category", "priority"),
    _ix(C.TICKETS, "is_breached", "status"),
    _ix(C.TICKETS, "sla.next_at"),
    _ix(C.TICKETS, "awaiting_dispatch", "created_at"),
    _ix(C.TICKET_REPLIES, "ticket_id", "created_at"),
    _ix(C.TICKET_REPLIES, "ticket_id", "internal", "created_at"),
    _ix(C.LEADS, "customer_ids", ("created_at", DESCENDING)),  # compound: a single-field index on an array breaks membership matches on nx-27017
    # hand-overs (server/services/handover.py): one running per user; the job finds stalled ones
    _ix(C.HANDOVERS, "running_for", unique=True, partial={"running_for": {"$exists": True}}),
    _ix(C.HANDOVERS, "status", "heartbeat_at"),
    # coordination and idempotency
    _ix(C.IDEMPOTENCY_KEYS, "expires_at", ttl_s=0),
    _ix(C.RATE_LIMITS, "expires_at", ttl_s=0),
]


class ReadOnlyCollection:
    """A collection as seen by a module that does not own it: the read methods and nothing else,
    so a write from the wrong module fails at once (and tests/test_architecture.py finds it first)."""

    __slots__ = ("_collection",)

    def __init__(self, collection: AsyncCollection) -> None:
        self._collection = collection

    @property
    def name(self) -> str:
        return self._collection.name

    def find(self, *args: Any, **kwargs: Any):
        return self._collection.find(*args, **kwargs)

    def find_one(self, *args: Any, **kwargs: Any):  # the driver's coroutine itself: one await fewer per read
        return self._collection.find_one(*args, **kwargs)

    async def aggregate(self, *args: Any, **kwargs: Any):
        return await self._collection.aggregate(*args, **kwargs)

    async def count_documents(self, *args: Any, **kwargs: Any) -> int:
        return await self._collection.count_documents(*args, **kwargs)

    async def distinct(self, *args: Any, **kwargs: Any) -> list:
        return await self._collection.distinct(*args, **kwargs)


@dataclass
class Database:
    """A connected client and the application database."""

    client: AsyncMongoClient
    db: AsyncDatabase
    listeners: list[CommandListener] = field(default_factory=list)

    def __getitem__(self, name: str):
        return self.collection(name)

    def collection(self, name: str) -> AsyncCollection:
        """A declared collection, writable: handed to its owner (``OWNERS``) only."""
        if name not in OWNERS:
            raise KeyError(f"{name!r} is not a declared collection (server/db.py Collections)")
        return self.db[name]

    def reader(self, name: str) -> ReadOnlyCollection:
        """A declared collection for a module that reads it but does not own it."""
        return ReadOnlyCollection(self.collection(name))

    async def ping(self) -> bool:
        return await ping(self.db)

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
