"""Settings, read once from environment variables (all prefixed ``KABAR_``).

Defaults make a laptop run work with nothing set (SQLite file in the working directory, no Redis);
``KABAR_ENV=production`` refuses to start while the secrets still have their development defaults.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass, field

DEV_SECRET_KEY = "dev-insecure-secret-key-change-me"
DEV_ENCRYPTION_KEY = base64.urlsafe_b64encode(hashlib.sha256(b"kabar-dev-encryption-key").digest()).decode()


class ConfigError(RuntimeError):
    """The environment describes a configuration Kabar refuses to run with."""


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _number(env: dict[str, str], name: str, default: float, cast: type) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return cast(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be {'an integer' if cast is int else 'a number'}, got {raw!r}") from exc


def _int(env: dict[str, str], name: str, default: int) -> int:
    return int(_number(env, name, default, int))


def _float(env: dict[str, str], name: str, default: float) -> float:
    return _number(env, name, default, float)


# A misspelt KABAR_ENV ("prod") must not quietly mean "development, with development secrets".
ENVIRONMENTS = ("development", "test", "production")
MAX_UPLOAD_BYTES = 16 * 1024 * 1024  # WhatsApp's media limit, and the most an upload may be


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    database_url: str = "sqlite:///kabar.db"
    redis_url: str | None = None
    secret_key: str = DEV_SECRET_KEY
    encryption_key: str = DEV_ENCRYPTION_KEY
    host: str = "127.0.0.1"
    port: int = 8000
    # Sessions issued by /v1/auth/login.
    session_ttl_hours: int = 24 * 14
    # Resolved API keys and sessions are reused this long (seconds; 0: never) in one process.
    # Revocation takes effect at once in the process that revoked, within this in others.
    auth_cache_seconds: float = 5.0
    # External identity provider (Supabase-compatible JWTs).
    jwt_secret: str | None = None
    jwt_jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_algorithms: tuple[str, ...] = ("HS256", "RS256")
    max_body_bytes: int = 1024 * 1024
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    data_dir: str = "data"
    job_max_attempts: int = 8
    job_poll_interval: float = 0.5
    job_backoff_base: float = 2.0  # seconds; attempt n waits about base * 2**(n-1)
    job_backoff_cap: float = 3600.0
    job_concurrency: int = 8
    run_jobs_in_process: bool | None = None
    sqlite_synchronous: str = "NORMAL"
    webhooks_allow_private: bool = False
    webhooks_timeout: float = 10.0  # seconds for one outgoing-webhook POST, all of it
    # An endpoint failing this long (seconds) and at least this many times in a row is disabled.
    webhooks_disable_after: float = 3 * 24 * 3600.0
    webhooks_disable_min_attempts: int = 10
    event_retention_days: int = 7
    event_retention_count: int = 100_000
    # Webhooks no workspace claims (unknown phone_number_id: unauthenticated) are kept at most this
    # many rows, each body cut to this many bytes, for this many hours (kabar.ingest.service).
    webhook_quarantine_rows: int = 1000
    webhook_quarantine_body_bytes: int = 64 * 1024
    webhook_quarantine_hours: int = 24
    log_level: str = "INFO"
    demo: bool = False  # start the fake WhatsApp provider and simulated customers in-process
    provider_timeout: float = 15.0  # seconds for one call to Kapso/Meta
    # After a send whose outcome is unknown (timeout, crash), wait this long for the provider's
    # status webhook to confirm it before sending again (see kabar.channels.tasks).
    send_confirm_seconds: float = 60.0
    # Reverse proxies allowed to say who the client is (X-Forwarded-For), e.g. "127.0.0.1".
    trusted_proxies: tuple[str, ...] = ()
    # Mail (invitations, password resets, email verification). Without an SMTP URL mails stay
    # in the outbox table (``kabar mail list``). smtp://user:pass@host:587 (STARTTLS when the
    # server offers it) or smtps://…:465 (TLS from the start).
    smtp_url: str | None = None
    mail_from: str = "Kabar <kabar@localhost>"
    # Where people open Kabar: the base of the links in mails.
    public_url: str = "http://127.0.0.1:8000"
    # Free-form settings by lower-case name without the prefix, e.g. KABAR_RATE_LIMIT_LOGIN
    # -> "rate_limit_login" (see kabar.ratelimit).
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def jobs_in_process(self) -> bool:
        """SQLite deployments run jobs inside ``kabar serve``; PostgreSQL ones use ``kabar worker``."""
        if self.run_jobs_in_process is not None:
            return self.run_jobs_in_process
        return self.is_sqlite

    @property
    def encryption_key_bytes(self) -> bytes:
        try:
            key = base64.urlsafe_b64decode(self.encryption_key + "=" * (-len(self.encryption_key) % 4))
        except (ValueError, TypeError) as exc:
            raise ConfigError("KABAR_ENCRYPTION_KEY must be 32 bytes, url-safe base64 encoded") from exc
        if len(key) != 32:
            raise ConfigError("KABAR_ENCRYPTION_KEY must be 32 bytes, url-safe base64 encoded")
        return key

    def check(self) -> None:
        """Refuse configurations that would be unsafe in production."""
        self.encryption_key_bytes  # noqa: B018 - validates the key's shape
        if self.is_production:
            if self.secret_key == DEV_SECRET_KEY or len(self.secret_key) < 32:
                raise ConfigError("KABAR_SECRET_KEY must be set to a random value of 32+ characters in production")
            if self.encryption_key == DEV_ENCRYPTION_KEY:
                raise ConfigError("KABAR_ENCRYPTION_KEY must be set in production (kabar keygen prints one)")
            if self.jwt_secret is not None and len(self.jwt_secret) < 32:
                raise ConfigError("KABAR_JWT_SECRET must be 32+ characters in production")


def load_settings(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    get = env.get
    in_process = get("KABAR_RUN_JOBS_IN_PROCESS")
    settings = Settings(
        env=get("KABAR_ENV", "development"),
        database_url=normalize_database_url(get("KABAR_DATABASE_URL") or "sqlite:///kabar.db"),
        redis_url=get("KABAR_REDIS_URL") or None,
        secret_key=get("KABAR_SECRET_KEY") or DEV_SECRET_KEY,
        encryption_key=get("KABAR_ENCRYPTION_KEY") or DEV_ENCRYPTION_KEY,
        host=get("KABAR_HOST", "127.0.0.1"),
        port=_int(env, "KABAR_PORT", 8000),
        session_ttl_hours=_int(env, "KABAR_SESSION_TTL_HOURS", 24 * 14),
        auth_cache_seconds=_float(env, "KABAR_AUTH_CACHE_SECONDS", 5.0),
        jwt_secret=get("KABAR_JWT_SECRET") or None,
        jwt_jwks_url=get("KABAR_JWT_JWKS_URL") or None,
        jwt_issuer=get("KABAR_JWT_ISSUER") or None,
        jwt_audience=get("KABAR_JWT_AUDIENCE") or None,
        max_body_bytes=_int(env, "KABAR_MAX_BODY_BYTES", 1024 * 1024),
        max_upload_bytes=_int(env, "KABAR_MAX_UPLOAD_BYTES", MAX_UPLOAD_BYTES),
        data_dir=get("KABAR_DATA_DIR", "data"),
        job_max_attempts=_int(env, "KABAR_JOB_MAX_ATTEMPTS", 8),
        job_poll_interval=_float(env, "KABAR_JOB_POLL_INTERVAL", 0.5),
        job_backoff_base=_float(env, "KABAR_JOB_BACKOFF_BASE", 2.0),
        job_backoff_cap=_float(env, "KABAR_JOB_BACKOFF_CAP", 3600.0),
        job_concurrency=_int(env, "KABAR_JOB_CONCURRENCY", 8),
        run_jobs_in_process=None if in_process in (None, "") else _bool(in_process),
        sqlite_synchronous=(get("KABAR_SQLITE_SYNCHRONOUS") or "NORMAL").upper(),
        webhooks_allow_private=_bool(get("KABAR_WEBHOOKS_ALLOW_PRIVATE")),
        webhooks_timeout=_float(env, "KABAR_WEBHOOKS_TIMEOUT", 10.0),
        webhooks_disable_after=_float(env, "KABAR_WEBHOOKS_DISABLE_AFTER", 3 * 24 * 3600.0),
        webhooks_disable_min_attempts=_int(env, "KABAR_WEBHOOKS_DISABLE_MIN_ATTEMPTS", 10),
        event_retention_days=_int(env, "KABAR_EVENT_RETENTION_DAYS", 7),
        event_retention_count=_int(env, "KABAR_EVENT_RETENTION_COUNT", 100_000),
        webhook_quarantine_rows=_int(env, "KABAR_WEBHOOK_QUARANTINE_ROWS", 1000),
        webhook_quarantine_body_bytes=_int(env, "KABAR_WEBHOOK_QUARANTINE_BODY_BYTES", 64 * 1024),
        webhook_quarantine_hours=_int(env, "KABAR_WEBHOOK_QUARANTINE_HOURS", 24),
        log_level=get("KABAR_LOG_LEVEL", "INFO").upper(),
        demo=_bool(get("KABAR_DEMO")),
        provider_timeout=_float(env, "KABAR_PROVIDER_TIMEOUT", 15.0),
        send_confirm_seconds=_float(env, "KABAR_SEND_CONFIRM_SECONDS", 60.0),
        trusted_proxies=tuple(p.strip() for p in (get("KABAR_TRUSTED_PROXIES") or "").split(",") if p.strip()),
        smtp_url=get("KABAR_SMTP_URL") or None,
        mail_from=get("KABAR_MAIL_FROM") or "Kabar <kabar@localhost>",
        public_url=(get("KABAR_PUBLIC_URL") or "http://127.0.0.1:8000").rstrip("/"),
        extra={name[len("KABAR_"):].lower(): value for name, value in env.items() if name.startswith("KABAR_RATE_LIMIT_")},
    )
    if settings.env not in ENVIRONMENTS:
        raise ConfigError(f"KABAR_ENV must be one of {', '.join(ENVIRONMENTS)}, got {settings.env!r}")
    if settings.sqlite_synchronous not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
        raise ConfigError("KABAR_SQLITE_SYNCHRONOUS must be one of OFF, NORMAL, FULL, EXTRA")
    if not 0 < settings.max_upload_bytes <= MAX_UPLOAD_BYTES:
        # The upload route's body limit is fixed when the app is built; a larger value would be
        # promised here and refused there.
        raise ConfigError(f"KABAR_MAX_UPLOAD_BYTES must be between 1 and {MAX_UPLOAD_BYTES} (16 MB, WhatsApp's media limit)")
    return settings


def normalize_database_url(url: str) -> str:
    """Accept the URLs people paste (``postgres://``, ``postgresql://``) and pick our drivers."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+asyncpg://" + url[len("postgresql://") :]
    return url
