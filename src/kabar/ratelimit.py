"""Rate limits (the ``limits`` library): in memory for one process, in Redis across processes.

Limits are moving windows per bucket and key: login attempts per email and per client address,
message sends per workspace. With ``KABAR_REDIS_URL`` every ``kabar serve`` process counts in the
same Redis keys, so a limit holds however many processes sit behind the load balancer. A Redis
outage never locks people out: the check then uses this process's own in-memory counts, and Redis
is tried again after a short pause (so an outage costs one connect timeout, not one per request).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from kabar.config import Settings
from kabar.errors import Problem

log = logging.getLogger("kabar.ratelimit")

# bucket -> limit; override with KABAR_RATE_LIMIT_<BUCKET>="10/minute".
DEFAULT_LIMITS = {
    "login": "10/minute",  # attempts per email address (password guessing against one account)
    "login_address": "60/minute",  # attempts per client address (an office shares one address)
    "send": "20/second",  # outbound messages per workspace (WhatsApp's own pair limits are lower)
    "webhook_unrouted": "60/minute",  # quarantined webhooks (unknown phone_number_id) per client address
}
REDIS_RETRY_SECONDS = 5.0


class RateLimiter:
    def __init__(self, settings: Settings):
        self._limits: dict[str, RateLimitItem] = {
            bucket: parse(settings.extra.get(f"rate_limit_{bucket}") or default) for bucket, default in DEFAULT_LIMITS.items()
        }
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        self._shared: MovingWindowRateLimiter | None = None
        self._shared_down_until = 0.0
        if settings.redis_url:
            storage = RedisStorage(
                settings.redis_url.replace("redis://", "async+redis://", 1).replace("rediss://", "async+rediss://", 1),
                implementation="redispy",
                socket_connect_timeout=1.0,
                socket_timeout=1.0,
            )
            self._shared = MovingWindowRateLimiter(storage)

    def _limiter(self) -> MovingWindowRateLimiter:
        if self._shared is not None and time.monotonic() >= self._shared_down_until:
            return self._shared
        return self._memory

    async def hit(self, bucket: str, key: str) -> None:
        """Count one event; raise 429 with Retry-After when the bucket is full."""
        item = self._limits[bucket]
        limiter = self._limiter()
        try:
            allowed = await limiter.hit(item, bucket, key)
        except Exception as exc:  # noqa: BLE001 - Redis down: this process's own count still applies
            log.warning("rate limit storage unavailable (%s); using in-process limits", type(exc).__name__)
            self._shared_down_until = time.monotonic() + REDIS_RETRY_SECONDS
            limiter = self._memory
            allowed = await limiter.hit(item, bucket, key)
        if allowed:
            return
        try:
            stats = await limiter.get_window_stats(item, bucket, key)
            retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        except Exception:  # noqa: BLE001 - the window's end is a hint; the refusal stands
            retry_after = item.get_expiry()
        raise Problem(
            429, "rate-limited", "Too many requests", f"Too many {bucket.replace('_', ' ')} attempts; retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )


def client_address(connection: Any, settings: Settings) -> str:
    """The caller's address; behind a trusted reverse proxy, the last address it forwarded.

    Only a proxy listed in ``KABAR_TRUSTED_PROXIES`` may say who the client is (anyone can send an
    ``X-Forwarded-For`` header); the right-most entry not itself a trusted proxy is the client.
    """
    peer = connection.client.host if connection.client else "unknown"
    if peer not in settings.trusted_proxies:
        return peer
    forwarded = [part.strip() for part in connection.headers.get("x-forwarded-for", "").split(",") if part.strip()]
    for address in reversed(forwarded):
        if address not in settings.trusted_proxies:
            return address
    return peer
