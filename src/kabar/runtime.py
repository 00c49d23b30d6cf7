"""The long-lived objects of one Kabar process, built once and shared by every request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kabar.auth.idp import IdentityProvider
from kabar.auth.service import Authenticator
from kabar.config import Settings
from kabar.crypto import Cipher
from kabar.db.engine import Database
from kabar.ratelimit import RateLimiter

if TYPE_CHECKING:
    from kabar.jobs.worker import JobRunner
    from kabar.realtime.hub import Hub


@dataclass
class Runtime:
    settings: Settings
    db: Database
    cipher: Cipher
    auth: Authenticator
    hub: Hub
    limiter: RateLimiter
    jobs: JobRunner | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        from kabar.realtime.hub import make_hub

        db = Database(settings)
        hub = make_hub(settings, db)
        runtime = cls(
            settings=settings,
            db=db,
            cipher=Cipher(settings.encryption_key_bytes),
            auth=Authenticator(settings, db, IdentityProvider(settings)),
            hub=hub,
            limiter=RateLimiter(settings),
        )
        return runtime
