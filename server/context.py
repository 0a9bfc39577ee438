"""The application context: settings, database, clock and services, built once per process.

Handlers reach it through ``Application.settings["ctx"]``; jobs receive it as an argument. There are
no module-level globals.
"""

from __future__ import annotations

from dataclasses import dataclass

from config.settings import Settings
from server.clock import Clock
from server.db import C, Database
from server.security import FieldCipher, Passwords, Tokens
from server.services.audit import AuditService
from server.services.allocation import AllocationService
from server.services.auth import AuthService
from server.services.capture import CaptureService
from server.services.contracts import ContractJobs, ContractService, PaymentService
from server.services.first_contact import FirstContactService
from server.services.followups import FollowupService
from server.services.forms import FormService
from server.services.idempotency import IdempotencyService
from server.services.imports import ImportService, ParseLimits
from server.services.lead_store import LeadStore
from server.services.leads import LeadService
from server.services.leases import LeaseService
from server.services.notifications import NotificationService
from server.services.outbox import OutboxService
from server.services.reminders import ReminderService
from server.services.reports import ReportService, RfmService
from server.services.stats import StatsService
from server.services.surveys import SurveyService
from server.services.after_sale import AfterSaleJobs
from server.services.service_report import ServiceReportService
from server.services.tasks import TaskService
from server.services.churn_signals import ChurnSignals
from server.services.tickets import TicketService
from server.services.handover import HandoverService
from server.services.pool import PoolService
from server.services.ratelimit import RateLimiter
from server.services.reclaim import ReclaimService
from server.services.sessions import SessionStore
from server.services.sync import SyncService
from server.services.uploads import UploadService
from server.services.users import UserService
from server.services.wechat import WechatClient


@dataclass(frozen=True)
class AppContext:
    """Everything a handler or job reaches, built once by ``build_context`` with keyword arguments."""

    settings: Settings
    database: Database
    clock: Clock
    tokens: Tokens
    cipher: FieldCipher
    audit: AuditService
    sessions: SessionStore
    users: UserService
    wechat: WechatClient
    auth: AuthService
    limiter: RateLimiter
    idempotency: IdempotencyService
    forms: FormService
    notifications: NotificationService
    tasks: TaskService
    leads: LeadService
    allocation: AllocationService
    capture: CaptureService
    followups: FollowupService
    pool: PoolService
    imports: ImportService
    reclaim: ReclaimService
    first_contact: FirstContactService
    sync: SyncService
    reminders: ReminderService
    outbox: OutboxService
    contracts: ContractService
    payments: PaymentService
    contract_jobs: ContractJobs
    stats: StatsService
    reports: ReportService
    rfm: RfmService
    surveys: SurveyService
    churn_signals: ChurnSignals
    tickets: TicketService
    handover: HandoverService
    after_sale: AfterSaleJobs
    service_report: ServiceReportService
    uploads: UploadService

    @property
    def db(self):
        return self.database.db

    def at(self, clock: Clock) -> AppContext:
        """The same settings and database with every service on ``clock``: a job run as of a chosen
        moment (``run-job --now``) stamps everything it causes with that moment."""
        return build_context(self.settings, self.database, clock)

    def lease_service(self, owner: str | None = None, clock: Clock | None = None) -> LeaseService:
        """Leases for jobs: each scheduler (or one-off run) holds its leases under its own owner id."""
        return LeaseService(self.database.collection(C.LEASES), clock or self.clock, owner=owner)


def build_context(settings: Settings, database: Database, clock: Clock | None = None) -> AppContext:
    """Each service receives the collections it owns (``database.collection``), read-only views of
    the ones it only reads (``database.reader``) and the services it calls; see server/db.py OWNERS."""
    clock = clock or Clock()
    own, view = database.collection, database.reader
    tokens = Tokens(settings)
    passwords = Passwords(settings)
    cipher = FieldCipher(settings)
    audit = AuditService(own(C.AUDIT_LOG), clock)
    sessions = SessionStore(own(C.REFRESH_TOKENS))
    users = UserService(
        users=own(C.USERS), teams=own(C.TEAMS), bind_codes=own(C.BIND_CODES), sessions=sessions,
        clock=clock, passwords=passwords, audit=audit, bind_code_ttl_s=settings.bind_code_ttl_s,
        auth_cache_ttl_s=settings.auth_cache_ttl_s, settings=settings,
    )
    wechat = WechatClient(settings, own(C.WECHAT_TOKENS), clock, cipher)
    limiter = RateLimiter(own(C.RATE_LIMITS), clock)
    # Attachments: built early so each owner of something that takes attachments registers who may
    # read them (uploads.register_access) as it is built.
    uploads = UploadService(
        upload_files=own(C.UPLOAD_FILES), upload_chunks=own(C.UPLOAD_CHUNKS), upload_records=own(C.UPLOAD_RECORDS),
        clock=clock, settings=settings, limiter=limiter,
    )
    auth = AuthService(
        clock=clock, tokens=tokens, passwords=passwords, cipher=cipher, users=users, sessions=sessions, wechat=wechat, audit=audit,
        refresh_ttl_s=settings.refresh_token_ttl_s, limiter=limiter,
        login_limits=(settings.login_user_limit, settings.login_ip_limit, settings.login_window_s),
    )
    idempotency = IdempotencyService(own(C.IDEMPOTENCY_KEYS), clock)
    forms = FormService(forms=own(C.FORMS), form_versions=own(C.FORM_VERSIONS), teams_view=view(C.TEAMS), clock=clock, audit=audit,
                        users=users, wechat=wechat, miniprogram_state=settings.wechat_miniprogram_state)
    notifications = NotificationService(notifications=own(C.NOTIFICATIONS), clock=clock,
                                        users_view=view(C.USERS), leads_view=view(C.LEADS), contracts_view=view(C.CONTRACTS))
    tasks = TaskService(tasks=own(C.TASKS), users_view=view(C.USERS), leads_view=view(C.LEADS), clock=clock, settings=settings, notifications=notifications)
    leads = LeadService(
        store=LeadStore(leads=own(C.LEADS), lead_events=own(C.LEAD_EVENTS), clock=clock), leads=view(C.LEADS), lead_events=view(C.LEAD_EVENTS),
        users=users, clock=clock, cipher=cipher, audit=audit, tasks=tasks, limiter=limiter,
        reveal_limit=(settings.reveal_limit, settings.reveal_window_s), notifications=notifications, tz=settings.tz,
    )
    stats = StatsService(
        stats_current=own(C.STATS_CURRENT), stats_cum=own(C.STATS_CUM), stats_overdue=own(C.STATS_OVERDUE), stats_leads=own(C.STATS_LEADS),
        stats_batches=own(C.STATS_BATCHES), stats_counters=own(C.STATS_COUNTERS),
        lead_events_view=view(C.LEAD_EVENTS), leads_view=view(C.LEADS), tasks_view=view(C.TASKS),
        leads=leads, clock=clock, tz=settings.tz, batch_size=settings.stats_fold_batch,
        stats_money=own(C.STATS_MONEY), contracts_view=view(C.CONTRACTS),
    )
    allocation = AllocationService(
        allocation_rules=own(C.ALLOCATION_RULES), allocation_runs=own(C.ALLOCATION_RUNS), leads_view=view(C.LEADS), users_view=view(C.USERS), tickets_view=view(C.TICKETS),
        clock=clock, leads=leads, users=users, notifications=notifications, audit=audit, tz=settings.tz, stats=stats,
    )
    reports = ReportService(
        teams_view=view(C.TEAMS), users_view=view(C.USERS), tasks_view=view(C.TASKS), stats_rfm_view=view(C.STATS_RFM),
        clock=clock, settings=settings, stats=stats, team_settings=users.team_settings,
    )
    churn_signals = ChurnSignals(leads_view=view(C.LEADS), leads=leads, tasks=tasks, clock=clock)
    surveys = SurveyService(
        surveys=own(C.SURVEYS), leads_view=view(C.LEADS), tickets_view=view(C.TICKETS), clock=clock, leads=leads, notifications=notifications,
        churn_signals=churn_signals, users=users,
    )
    tickets = TicketService(
        tickets=own(C.TICKETS), ticket_replies=own(C.TICKET_REPLIES), leads_view=view(C.LEADS), users_view=view(C.USERS), clock=clock,
        settings=settings, leads=leads, users=users, allocation=allocation, notifications=notifications, churn_signals=churn_signals,
        uploads=uploads, surveys=surveys,
    )
    contracts = ContractService(contracts=own(C.CONTRACTS), users_view=view(C.USERS), leads_view=view(C.LEADS), clock=clock,
                                settings=settings, leads=leads, audit=audit, notifications=notifications, team_settings=users.team_settings,
                                uploads=uploads, lead_events_view=view(C.LEAD_EVENTS))
    handover = HandoverService(
        handovers=own(C.HANDOVERS), users_view=view(C.USERS), leads_view=view(C.LEADS), contracts_view=view(C.CONTRACTS), tasks_view=view(C.TASKS),
        rules_view=view(C.ALLOCATION_RULES), tickets_view=view(C.TICKETS), clock=clock, users=users, leads=leads, contracts=contracts, tasks=tasks,
        allocation=allocation, notifications=notifications, audit=audit, tickets=tickets,
    )
    after_sale = AfterSaleJobs(contracts_view=view(C.CONTRACTS), leads_view=view(C.LEADS), clock=clock, tz=settings.tz, users=users, tasks=tasks, surveys=surveys)
    return AppContext(
        settings=settings,
        database=database,
        clock=clock,
        tokens=tokens,
        cipher=cipher,
        audit=audit,
        sessions=sessions,
        users=users,
        wechat=wechat,
        auth=auth,
        limiter=limiter,
        idempotency=idempotency,
        forms=forms,
        notifications=notifications,
        tasks=tasks,
        leads=leads,
        allocation=allocation,
        capture=CaptureService(settings, forms, leads, limiter, idempotency, wechat, allocation=allocation),
        followups=FollowupService(lead_events_view=view(C.LEAD_EVENTS), clock=clock, leads=leads, tasks=tasks, uploads=uploads),
        pool=PoolService(leads_view=view(C.LEADS), clock=clock, leads=leads, users=users, tz=settings.tz),
        imports=ImportService(
            imports=own(C.IMPORTS), import_rejects=own(C.IMPORT_REJECTS), leads_view=view(C.LEADS), users_view=view(C.USERS), teams_view=view(C.TEAMS),
            clock=clock, leads=leads, audit=audit, default_language=settings.default_language, tz=settings.tz,
            cipher=cipher, limits=ParseLimits.from_settings(settings), parse_queue=settings.import_parse_queue, allocation=allocation,
        ),
        first_contact=FirstContactService(leads_view=view(C.LEADS), clock=clock, leads=leads, users=users, notifications=notifications),
        reclaim=ReclaimService(teams_view=view(C.TEAMS), leads_view=view(C.LEADS), clock=clock, leads=leads, notifications=notifications,
                               settings_book=users.settings_book),
        sync=SyncService(leads_view=view(C.LEADS), lead_events_view=view(C.LEAD_EVENTS), tasks_view=view(C.TASKS), clock=clock),
        reminders=ReminderService(
            users_view=view(C.USERS), leads_view=view(C.LEADS), clock=clock, settings=settings, tasks=tasks, leads=leads, notifications=notifications,
            settings_book=users.settings_book,
        ),
        outbox=OutboxService(
            subscriptions=own(C.SUBSCRIPTIONS), notifications_view=view(C.NOTIFICATIONS), users_view=view(C.USERS),
            notifications=notifications, clock=clock, settings=settings, wechat=wechat, settings_book=users.settings_book,
        ),
        contracts=contracts,
        handover=handover,
        payments=PaymentService(contracts=own(C.CONTRACTS), clock=clock, settings=settings, audit=audit, leads=leads, leads_view=view(C.LEADS)),
        contract_jobs=ContractJobs(contracts=own(C.CONTRACTS), users_view=view(C.USERS), leads_view=view(C.LEADS), clock=clock,
                                   settings=settings, leads=leads, notifications=notifications, settings_book=users.settings_book),
        stats=stats,
        reports=reports,
        surveys=surveys,
        churn_signals=churn_signals,
        tickets=tickets,
        after_sale=after_sale,
        service_report=ServiceReportService(reports=reports, stats=stats, teams_view=view(C.TEAMS), users_view=view(C.USERS)),
        uploads=uploads,
        rfm=RfmService(stats_rfm=own(C.STATS_RFM), contracts_view=view(C.CONTRACTS), leads_view=view(C.LEADS), leads=leads, reports=reports,
                       team_settings=users.team_settings),
    )
