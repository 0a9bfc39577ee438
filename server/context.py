"""The application context: settings, database, clock and services, built once per process.

Handlers reach it through ``Application.settings["ctx"]``; jobs receive it as an argument. There are
no module-level globals.
"""

from __future__ import annotations

from dataclasses import dataclass

from config.settings import Settings
from server.clock import Clock
from server.db import Database
from server.security import FieldCipher, Passwords, Tokens
from server.services.audit import AuditService
from server.services.allocation import AllocationService
from server.services.auth import AuthService
from server.services.capture import CaptureService
from server.services.contracts import ContractService
from server.services.followups import FollowupService
from server.services.forms import FormService
from server.services.idempotency import IdempotencyService
from server.services.imports import ImportService, ParseLimits
from server.services.leads import LeadService
from server.services.notifications import NotificationService
from server.services.outbox import OutboxService
from server.services.reminders import ReminderService
from server.services.reports import ReportService, RfmService
from server.services.stats import StatsService
from server.services.tasks import TaskService
from server.services.pool import PoolService
from server.services.ratelimit import RateLimiter
from server.services.reclaim import ReclaimService
from server.services.sync import SyncService
from server.services.users import UserService
from server.services.wechat import WechatClient


@dataclass
class AppContext:
    settings: Settings
    database: Database
    clock: Clock
    tokens: Tokens
    cipher: FieldCipher
    audit: AuditService
    users: UserService
    wechat: WechatClient
    auth: AuthService
    limiter: RateLimiter
    idempotency: IdempotencyService
    forms: FormService
    leads: LeadService
    capture: CaptureService
    followups: FollowupService
    pool: PoolService
    imports: ImportService
    notifications: NotificationService
    allocation: AllocationService
    reclaim: ReclaimService
    sync: SyncService
    tasks: TaskService
    reminders: ReminderService
    outbox: OutboxService
    contracts: ContractService = None  # type: ignore[assignment]
    stats: StatsService = None  # type: ignore[assignment]
    reports: ReportService = None  # type: ignore[assignment]
    rfm: RfmService = None  # type: ignore[assignment]

    @property
    def db(self):
        return self.database.db


def build_context(settings: Settings, database: Database, clock: Clock | None = None) -> AppContext:
    clock = clock or Clock()
    db = database.db
    tokens = Tokens(settings)
    passwords = Passwords(settings)
    cipher = FieldCipher(settings)
    audit = AuditService(db, clock)
    users = UserService(db, clock, passwords, audit, settings.bind_code_ttl_s)
    wechat = WechatClient(settings, db, clock, cipher)
    limiter = RateLimiter(db, clock)
    auth = AuthService(
        db, clock, tokens, passwords, cipher, users, wechat, audit, settings.refresh_token_ttl_s,
        limiter=limiter, login_limits=(settings.login_user_limit, settings.login_ip_limit, settings.login_window_s),
    )
    idempotency = IdempotencyService(db, clock)
    forms = FormService(db, clock, audit)
    notifications = NotificationService(db, clock)
    tasks = TaskService(db, clock, settings, notifications)
    leads = LeadService(db, clock, cipher, audit, tasks=tasks, limiter=limiter, reveal_limit=(settings.reveal_limit, settings.reveal_window_s))
    capture = CaptureService(settings, forms, leads, limiter, idempotency, wechat)
    followups = FollowupService(db, clock, leads, tasks)
    pool = PoolService(db, clock, leads, users, settings.tz)
    imports = ImportService(
        db, clock, leads, audit, settings.default_language, tz=settings.tz,
        cipher=cipher, limits=ParseLimits.from_settings(settings), parse_queue=settings.import_parse_queue,
    )
    allocation = AllocationService(db, clock, leads, notifications, audit, settings.tz)
    reclaim = ReclaimService(db, clock, leads, notifications, tasks)
    sync = SyncService(db, clock)
    reminders = ReminderService(db, clock, settings, tasks, leads, notifications)
    outbox = OutboxService(db, clock, settings, wechat)
    stats = StatsService(db, clock, settings.tz, settings.stats_fold_batch)
    reports = ReportService(db, clock, settings, stats)
    return AppContext(
        settings=settings, database=database, clock=clock, tokens=tokens, cipher=cipher,
        audit=audit, users=users, wechat=wechat, auth=auth, limiter=limiter, idempotency=idempotency,
        forms=forms, leads=leads, capture=capture, followups=followups, pool=pool, notifications=notifications, allocation=allocation, reclaim=reclaim,
        imports=imports, sync=sync, tasks=tasks, reminders=reminders, outbox=outbox,
        contracts=ContractService(db, clock, settings, leads, audit, notifications, idempotency),
        stats=stats, reports=reports, rfm=RfmService(db, reports),
    )
