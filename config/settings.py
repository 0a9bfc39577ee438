"""The one typed settings object. No other module reads ``os.environ``.

Every field maps to an environment variable with the ``MPCRM_`` prefix (``port`` ↔ ``MPCRM_PORT``).
Development defaults make ``make run`` work on a bare machine; ``MPCRM_ENV=production`` refuses to
start while any secret is missing or still has its development default.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Development-only secrets. Production refuses to start with any of them.
DEV_JWT_SECRET = "dev-jwt-secret-change-me-0123456789abcdef"
DEV_FIELD_KEY = base64.b64encode(b"dev-field-key-32-bytes-long!!!!!").decode()
DEV_BLIND_INDEX_KEY = base64.b64encode(b"dev-blind-index-key-32-bytes!!!!").decode()
DEV_WECHAT_SECRET = "dev-wechat-secret"
DEV_WECHAT_APPID = "wx0000000000000000"

_DEFAULT_SECRETS = {
    "jwt_secret": DEV_JWT_SECRET,
    "field_key": DEV_FIELD_KEY,
    "blind_index_key": DEV_BLIND_INDEX_KEY,
    "wechat_secret": DEV_WECHAT_SECRET,
}


class SettingsError(ValueError):
    """The configuration cannot be used (for example a default secret in production)."""


def _decode_key(value: str, name: str) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise ValueError(f"{name} must be base64") from exc
    if len(raw) != 32:
        raise ValueError(f"{name} must be 32 bytes once base64-decoded (got {len(raw)})")
    return raw


class ApprovalStepRule(BaseModel):
    """One approval step: the owner's team ``manager`` (any one), any ``admin``, ``any_of`` or
    ``all_of`` (countersign) the named users (user ids or usernames)."""

    type: Literal["manager", "admin", "any_of", "all_of"]
    users: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _named(self) -> ApprovalStepRule:
        if self.type in ("any_of", "all_of") and not self.users:
            raise ValueError(f"an {self.type} step needs users")
        return self


class ApprovalTier(BaseModel):
    """Contracts up to ``max_fen`` (None: any amount) get these steps, in order."""

    max_fen: int | None = Field(None, ge=1)
    steps: list[ApprovalStepRule] = Field(min_length=1)


DEFAULT_APPROVAL_THRESHOLDS = [
    ApprovalTier(max_fen=10_000_000, steps=[ApprovalStepRule(type="manager")]),
    ApprovalTier(max_fen=None, steps=[ApprovalStepRule(type="manager"), ApprovalStepRule(type="admin")]),
]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MPCRM_", extra="ignore", frozen=True)

    env: Literal["development", "test", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)

    # Database. Unset URI → the embedded nx-27017 server on DATA_DIR.
    mongodb_uri: SecretStr | None = None
    db_name: str = "mpcrm"
    data_dir: Path = Path("./data")
    embedded_port: int = Field(27018, ge=1, le=65535)
    # `run` restarts an embedded database that died (back-off 0.5 s, 1 s, 2 s …) and exits non-zero
    # after this many restarts within the window, so a process manager can act.
    embedded_restart_max: int = Field(5, ge=1, description="Restarts of a dead embedded database within EMBEDDED_RESTART_WINDOW_S before run exits")
    embedded_restart_window_s: int = Field(300, ge=1)
    db_timeout_ms: int = Field(5000, ge=100, description="PyMongo timeoutMS: the limit on every database call")
    db_server_selection_timeout_ms: int = Field(2000, ge=100)

    # Tokens. Old keys stay valid for verification only: {"kid": "secret"}.
    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_kid: str = "k1"
    jwt_old_keys: dict[str, SecretStr] = Field(default_factory=dict)
    jwt_issuer: str = "mpcrm"
    jwt_audience: str = "mpcrm-api"
    access_token_ttl_s: int = Field(900, ge=60, le=900)
    auth_cache_ttl_s: float = Field(
        1.0, ge=0, le=1.0,
        description="How long an instance trusts the user it read for a request (0 = read on every request); a change elsewhere reaches it within this",
    )
    refresh_token_ttl_s: int = Field(30 * 86400, ge=3600)
    bind_code_ttl_s: int = Field(24 * 3600, ge=60)

    # Personal data: AES-256-GCM field key (base64 of 32 bytes) with its version, older keys kept for
    # reading ({"1": "base64..."}), and the HMAC key of the blind index.
    field_key: SecretStr = SecretStr(DEV_FIELD_KEY)
    field_key_version: int = Field(1, ge=1)
    field_old_keys: dict[str, SecretStr] = Field(default_factory=dict)
    blind_index_key: SecretStr = SecretStr(DEV_BLIND_INDEX_KEY)

    # Operations: the bearer token a Prometheus scraper sends to GET /metrics. Set: required in
    # every environment. Unset: /metrics is open in development and test, and off (404) in production.
    metrics_token: SecretStr | None = Field(None, description="Bearer token of GET /metrics (≥ 32 characters in production)")

    # WeChat.
    wechat_appid: str = DEV_WECHAT_APPID
    wechat_secret: SecretStr = SecretStr(DEV_WECHAT_SECRET)
    wechat_api_base: str = "http://127.0.0.1:8100"
    wechat_timeout_s: float = Field(5.0, gt=0, le=30)
    wechat_stub: bool | None = Field(
        None, description="Start the fake WeChat API with `run`; default: on in development only"
    )

    timezone: str = "Asia/Shanghai"
    allocate_on_capture: bool = Field(True, description="Allocate a captured lead right after the response, not only in the sweep")
    scheduler: Literal["on", "off"] = "on"

    # Tasks, reminders, escalation and churn warnings (docs/features.md, "Tasks and reminders").
    reminder_due_soon_min: int = Field(60, ge=0, description="Due-soon reminder this many minutes before due_at; 0 = off")
    escalation_remind_days: int = Field(1, ge=0, description="Overdue this many days: remind the owner again; 0 = off")
    escalation_manager_days: int = Field(3, ge=0, description="Overdue this many days: tell the team's managers too; 0 = off")
    escalation_at_risk_days: int = Field(7, ge=0, description="Overdue this many days: flag the lead at_risk, suggest reassignment; 0 = off")
    churn_days: int = Field(90, ge=1, description="Customers silent this many days move to at_risk")
    churn_days_by_level: dict[str, int] = Field(default_factory=dict, description='Per level, e.g. {"A": 60, "C": 120}')
    churn_warning_days: list[int] = Field(default_factory=lambda: [30, 60], description="Earlier warnings (days of silence)")
    # WeChat subscribe messages (the outbox).
    wechat_templates: dict[str, dict] = Field(default_factory=dict, description="{kind: {template_id, page?, fields: {source: wechat_key}}}; merged over the built-in catalogue, the mini-program's miniprogram_stub/miniprogram/templates.js (the ids the fake WeChat knows)")
    wechat_miniprogram_state: Literal["developer", "trial", "formal"] = "formal"
    quiet_hours: str = Field("21:00-08:00", pattern=r"^(([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d)?$", description="Business-time window with no non-urgent pushes; empty = none")
    outbox_batch: int = Field(100, ge=1, le=1000)
    outbox_claim_s: int = Field(120, ge=10, description="A sending claim older than this is taken over by another worker")
    outbox_retry_base_s: int = Field(60, ge=1)
    outbox_max_attempts: int = Field(6, ge=1)

    # Requests.
    json_body_limit: int = Field(1024 * 1024, ge=1024)
    upload_body_limit: int = Field(20 * 1024 * 1024, ge=1024)
    trusted_proxies: list[str] = Field(default_factory=list)
    public_submit_limit: int = Field(20, ge=1, description="Form submissions per client address per minute")
    public_phone_limit: int = Field(5, ge=1, description="Form submissions per phone number per minute")
    default_language: Literal["zh-CN", "en"] = "zh-CN"
    # Bounded work (OWASP API4): login and reveal throttles, counted in the database.
    login_user_limit: int = Field(10, ge=1, description="Password logins per username per LOGIN_WINDOW_S")
    login_ip_limit: int = Field(30, ge=1, description="Password logins per client address per LOGIN_WINDOW_S")
    login_window_s: int = Field(300, ge=1)
    reveal_limit: int = Field(60, ge=1, description="Phone reveals per user per REVEAL_WINDOW_S")
    reveal_window_s: int = Field(3600, ge=1)
    password_hash_workers: int = Field(2, ge=1, le=64, description="Threads that run Argon2 (nothing else runs there)")
    password_hash_queue: int = Field(32, ge=1, description="Hashes waiting for a thread; beyond that a login gets 503")
    # Spreadsheet imports: parsed one at a time on a worker of their own, after these checks.
    import_parse_queue: int = Field(2, ge=0, description="Uploads waiting for the parser; beyond that 503")
    import_max_unzipped: int = Field(64 * 1024 * 1024, ge=1024, description="XLSX: the members' total uncompressed size")
    import_max_member: int = Field(32 * 1024 * 1024, ge=1024, description="XLSX: one member's uncompressed size")
    import_max_shared_strings: int = Field(8 * 1024 * 1024, ge=1024, description="XLSX: the shared-strings part's uncompressed size")
    # Attachments (POST /uploads): images and PDF, checked by their bytes, stored in GridFS.
    attachment_max_bytes: int = Field(10 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024, description="The largest attachment file")
    attachment_rate_limit: int = Field(60, ge=1, description="Uploads per user per ATTACHMENT_RATE_WINDOW_S")
    attachment_rate_window_s: int = Field(3600, ge=1)
    attachment_unattached_quota: int = Field(50, ge=1, description="Uploads a user may hold that are not attached to anything yet")
    attachment_unattached_hours: int = Field(24, ge=1, description="Unattached uploads older than this are deleted (uploads_gc)")

    # Passwords: Argon2id cost. Lower only in tests.
    argon2_time_cost: int = Field(3, ge=1)
    argon2_memory_kib: int = Field(65536, ge=8)

    # Contracts and approvals (JSON lists in the environment).
    contract_max_amount_fen: int = Field(10_000_000_000, ge=1, description="The largest contract amount, in fen")
    approval_thresholds: list[ApprovalTier] = Field(default_factory=lambda: list(DEFAULT_APPROVAL_THRESHOLDS))
    renewal_reminder_days: list[int] = Field(default_factory=lambda: [30, 15, 7, 1])
    renewal_manager_days: int = Field(7, ge=0, description="From this many days before the end the manager is told too")
    payment_reminder_days_before: int = Field(3, ge=0)
    payment_overdue_days: list[int] = Field(default_factory=lambda: [1, 7, 30])

    # Reports (docs/reports.md): the fold of lead_events into counters, and the RFM layers.
    stats_fold_batch: int = Field(500, ge=1, le=5000, description="Timeline events folded into report counters per batch")
    rfm_recency_days: list[int] = Field(default_factory=lambda: [30, 180], min_length=2, max_length=2, description="Recency scores 3 / 2 at or under these days, else 1")
    rfm_frequency: list[int] = Field(default_factory=lambda: [3, 1], min_length=2, max_length=2, description="Frequency scores 3 / 2 at or above these contract counts, else 1")
    rfm_monetary_fen: list[int] = Field(default_factory=lambda: [10_000_000, 1_000_000], min_length=2, max_length=2, description="Monetary scores 3 / 2 at or above these fen, else 1")
    rfm_layer_scores: dict[str, int] = Field(default_factory=lambda: {"A": 8, "B": 5}, description="Total score (3-9) at or above which a customer is A, B; else C")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("field_key", "blind_index_key")
    @classmethod
    def _key_shape(cls, value: SecretStr, info) -> SecretStr:
        _decode_key(value.get_secret_value(), info.field_name)
        return value

    @model_validator(mode="after")
    def _production_secrets(self) -> Settings:
        if self.env != "production":
            return self
        bad = [
            f"MPCRM_{name.upper()}"
            for name, default in _DEFAULT_SECRETS.items()
            if not getattr(self, name).get_secret_value() or getattr(self, name).get_secret_value() == default
        ]
        if len(self.jwt_secret.get_secret_value()) < 32:
            bad.append("MPCRM_JWT_SECRET (at least 32 characters)")
        # Retired keys still verify tokens and decrypt phones: a public development value kept
        # there is as bad as one in the current key.
        public = set(_DEFAULT_SECRETS.values())
        old_jwt = [k.get_secret_value() for k in self.jwt_old_keys.values()]
        if any(v in public or len(v) < 32 for v in old_jwt):
            bad.append("MPCRM_JWT_OLD_KEYS (a development or short key)")
        if any(k.get_secret_value() in public for k in self.field_old_keys.values()):
            bad.append("MPCRM_FIELD_OLD_KEYS (a development key)")
        if self.metrics_token is not None and len(self.metrics_token.get_secret_value()) < 32:
            bad.append("MPCRM_METRICS_TOKEN (at least 32 characters)")
        if bad:
            raise SettingsError("production refuses default or missing secrets: " + ", ".join(sorted(set(bad))))
        return self

    # Derived values, computed on use so the object stays a plain record.
    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def attachment_body_limit(self) -> int:
        """The body cap of POST /uploads: the largest file and room for its multipart envelope."""
        return self.attachment_max_bytes + 64 * 1024

    @property
    def embedded(self) -> bool:
        return self.mongodb_uri is None

    @property
    def start_wechat_stub(self) -> bool:
        return self.env == "development" if self.wechat_stub is None else self.wechat_stub

    def field_keys(self) -> dict[int, bytes]:
        """Every field-encryption key by version: the current one and those kept for reading."""
        keys = {int(v): _decode_key(k.get_secret_value(), f"field_old_keys[{v}]") for v, k in self.field_old_keys.items()}
        keys[self.field_key_version] = _decode_key(self.field_key.get_secret_value(), "field_key")
        return keys

    def blind_key(self) -> bytes:
        return _decode_key(self.blind_index_key.get_secret_value(), "blind_index_key")

    def jwt_keys(self) -> dict[str, str]:
        keys = {kid: s.get_secret_value() for kid, s in self.jwt_old_keys.items()}
        keys[self.jwt_kid] = self.jwt_secret.get_secret_value()
        return keys


def load_settings(**overrides) -> Settings:
    """Build the settings from the environment; keyword overrides win (used by tests and the CLI).

    Raises ``SettingsError`` (pydantic would wrap it in a ValidationError) with one readable line.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = [
            (f"MPCRM_{str(err['loc'][0]).upper()}: " if err.get("loc") else "") + err["msg"].removeprefix("Value error, ")
            for err in exc.errors(include_url=False, include_input=False)
        ]
        raise SettingsError("; ".join(problems)) from None
