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
from server.services.auth import AuthService
from server.services.capture import CaptureService
from server.services.followups import FollowupService
from server.services.forms import FormService
from server.services.idempotency import IdempotencyService
from server.services.leads import LeadService
from server.services.pool import PoolService
from server.services.ratelimit import RateLimiter
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
    wechat = WechatClient(settings, db, clock)
    auth = AuthService(db, clock, tokens, passwords, cipher, users, wechat, audit, settings.refresh_token_ttl_s)
    limiter = RateLimiter(db, clock)
    idempotency = IdempotencyService(db, clock)
    forms = FormService(db, clock, audit)
    leads = LeadService(db, clock, cipher, audit)
    capture = CaptureService(settings, forms, leads, limiter, idempotency, wechat)
    followups = FollowupService(db, clock, leads)
    pool = PoolService(db, clock, leads, users, settings.tz)
    return AppContext(
        settings=settings, database=database, clock=clock, tokens=tokens, cipher=cipher,
        audit=audit, users=users, wechat=wechat, auth=auth, limiter=limiter, idempotency=idempotency,
        forms=forms, leads=leads, capture=capture, followups=followups, pool=pool,
    )
