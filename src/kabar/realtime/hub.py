"""The realtime hub: after a commit it tells subscribers "workspace W has events up to seq N".

The event log is the source of truth; the hub only carries wake-ups (and ephemeral messages such
as typing, which are never logged). Subscribers read the log themselves through the per-workspace
feeds (``kabar.realtime.feed``), so a lost or duplicated wake-up can delay an event, never lose
or repeat one.

- ``Hub``: one process. ``after_commit`` wakes the local feeds directly.
- ``RedisHub`` (``KABAR_REDIS_URL`` set): also publishes "W N" on a Redis channel that every
  process listens to, so a subscriber on process A sees a write made on process B at once.
  Publishing happens in a background task, so a write never waits on Redis, and a Redis error
  never turns a committed write into a failure. While Redis is unreachable the feeds poll the
  log every ``poll_seconds``; when it is back every feed reads once (to pick up what was written
  meanwhile) and wake-ups take over again. ``health()`` reports the state for /readyz.

Knobs (environment, all optional): ``KABAR_REALTIME_QUEUE`` (items a socket may fall behind
before it gets ``resync`` and is closed; default 5000), ``KABAR_REALTIME_PING_SECONDS`` (25: one
task per process pings every socket that sent nothing during the last period),
``KABAR_REALTIME_POLL_SECONDS`` (polling period while Redis is down; 1),
``KABAR_REALTIME_SAFETY_POLL_SECONDS`` (a feed reads the log at least this often even with no
wake-up: a safety net against a lost pub/sub message and for writes by other processes without
Redis, e.g. CLI commands on SQLite; 5), ``KABAR_REALTIME_SEND_TIMEOUT`` (seconds a single send
may block before the socket is dropped as dead; 10).
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from kabar.config import Settings
from kabar.db.engine import Database
from kabar.realtime.feed import FeedRegistry
from kabar.auth import visibility
from kabar.auth.scope import system_scope

log = logging.getLogger("kabar.realtime")

Listener = Callable[[str, int], None]
EVENTS_CHANNEL = "kabar:realtime:events"
EPHEMERAL_CHANNEL = "kabar:realtime:ephemeral"
_UNKNOWN: Any = object()


@dataclass
class RealtimeOptions:
    queue_size: int = 5000
    ping_seconds: float = 25.0
    poll_seconds: float = 1.0
    safety_poll_seconds: float = 5.0
    send_timeout: float = 10.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> RealtimeOptions:
        env = dict(os.environ if env is None else env)
        defaults = cls()

        def num(name: str, default: float) -> float:
            raw = env.get(name)
            return float(raw) if raw not in (None, "") else default

        return cls(
            queue_size=int(num("KABAR_REALTIME_QUEUE", defaults.queue_size)),
            ping_seconds=num("KABAR_REALTIME_PING_SECONDS", defaults.ping_seconds),
            poll_seconds=num("KABAR_REALTIME_POLL_SECONDS", defaults.poll_seconds),
            safety_poll_seconds=num("KABAR_REALTIME_SAFETY_POLL_SECONDS", defaults.safety_poll_seconds),
            send_timeout=num("KABAR_REALTIME_SEND_TIMEOUT", defaults.send_timeout),
        )


class Hub:
    """In-process fan-out of "new events up to seq" notifications and of ephemeral messages."""

    def __init__(self, db: Database | None = None, options: RealtimeOptions | None = None) -> None:
        self.db = db  # type: ignore[assignment]
        self.options = options or RealtimeOptions()
        self._listeners: dict[str, set[Listener]] = defaultdict(set)
        self.last_seq: dict[str, int] = {}
        self.feeds = FeedRegistry(self)

    def subscribe(self, workspace_id: str, listener: Listener) -> Callable[[], None]:
        self._listeners[workspace_id].add(listener)

        def unsubscribe() -> None:
            listeners = self._listeners.get(workspace_id)
            if listeners is not None:
                listeners.discard(listener)
                if not listeners:
                    del self._listeners[workspace_id]

        return unsubscribe

    def publish_local(self, workspace_id: str, seq: int) -> None:
        if seq <= self.last_seq.get(workspace_id, 0):
            return
        self.last_seq[workspace_id] = seq
        for listener in list(self._listeners.get(workspace_id, ())):
            listener(workspace_id, seq)

    async def publish(self, workspace_id: str, seq: int) -> None:
        self.publish_local(workspace_id, seq)

    async def after_commit(self, uow: Any) -> None:
        for workspace_id, seq in uow.last_seqs.items():
            await self.publish(workspace_id, seq)

    # -- ephemeral messages (typing) -----------------------------------------------------------

    async def publish_ephemeral(
        self,
        workspace_id: str,
        message: dict[str, Any],
        *,
        contact_id: str | None = None,
        audience: Any = _UNKNOWN,
        exclude: Any = None,
    ) -> None:
        """Send a not-logged message (e.g. ``{"op": "typing", "conversation_id": …}``) to the
        workspace's connected subscribers, on every process.

        Members receive it only if the contact is visible to them: pass ``contact_id`` (looked up
        here) or an already known ``audience`` (``kabar.auth.visibility``: None = everyone).
        The ingest code calls this for a customer's typing indicator from a provider event.
        """
        if audience is _UNKNOWN:
            audience = visibility.EVERYONE
            if contact_id is not None:
                from kabar.realtime import repository as repo

                owner = await self.db.read(repo.contact_assignee, system_scope(workspace_id), contact_id)
                audience = visibility.audience(owner) if owner is not None else visibility.NO_MEMBER
        self.feeds.broadcast(workspace_id, message, audience, exclude)
        await self._forward_ephemeral(workspace_id, message, audience)

    async def _forward_ephemeral(self, workspace_id: str, message: dict[str, Any], audience: Any) -> None:
        """Other processes (RedisHub)."""

    # -- lifecycle and state -------------------------------------------------------------------

    @property
    def degraded(self) -> bool:
        """True while wake-ups from other processes may be missing (feeds then poll quickly)."""
        return False

    @property
    def poll_interval(self) -> float:
        return self.options.poll_seconds if self.degraded else self.options.safety_poll_seconds

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        await self.feeds.stop()

    async def health(self) -> str | None:
        """"ok" or a reason, for /readyz; None when the hub has no external dependency."""
        return None

    @property
    def subscriber_count(self) -> int:
        return self.feeds.subscriber_count


class RedisHub(Hub):
    """Hub across processes over Redis pub/sub (see the module docstring)."""

    def __init__(self, redis_url: str, db: Database, options: RealtimeOptions | None = None) -> None:
        super().__init__(db, options)
        import redis.asyncio as redis

        self.origin = uuid.uuid4().hex  # our own ephemeral messages come back; skip them
        self.redis = redis.Redis.from_url(
            redis_url, socket_connect_timeout=1.0, socket_timeout=2.0, retry_on_timeout=False, health_check_interval=0
        )
        self.state = "starting"
        self._to_publish: dict[str, int] = {}
        self._publish_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._recovering_until = 0.0

    async def publish(self, workspace_id: str, seq: int) -> None:
        self.publish_local(workspace_id, seq)
        # Coalesced: only the highest seq per workspace matters, and the write never waits.
        if seq > self._to_publish.get(workspace_id, 0):
            self._to_publish[workspace_id] = seq
        self._publish_wake.set()

    async def _forward_ephemeral(self, workspace_id: str, message: dict[str, Any], audience: Any) -> None:
        body = msgspec.json.encode({"o": self.origin, "w": workspace_id, "a": audience, "m": message})
        try:
            await self.redis.publish(EPHEMERAL_CHANNEL, body)
        except Exception as exc:  # noqa: BLE001 - typing is best effort
            log.debug("ephemeral publish failed: %s", exc)

    @property
    def degraded(self) -> bool:
        return self.state != "ok" or asyncio.get_running_loop().time() < self._recovering_until

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen_loop(), name="realtime-redis-listen"),
            asyncio.create_task(self._publish_loop(), name="realtime-redis-publish"),
        ]

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await super().stop()
        try:
            await self.redis.aclose()
        except Exception:  # noqa: BLE001
            pass

    async def health(self) -> str | None:
        return self.state

    def _set_state(self, state: str) -> None:
        if state != self.state:
            was_ok = self.state == "ok"
            self.state = state
            if state == "ok":
                # Other processes may still be reconnecting (and not publishing): keep polling
                # quickly for a moment, and read once now for what was written meanwhile.
                self._recovering_until = asyncio.get_running_loop().time() + 5 * self.options.poll_seconds
                log.info("realtime: Redis connected")
            elif was_ok:
                log.warning("realtime: Redis unavailable (%s); subscribers poll the event log", state)
            self.feeds.wake_all()  # switch poll rate now, and catch up

    async def _publish_loop(self) -> None:
        while not self._stopping:
            await self._publish_wake.wait()
            self._publish_wake.clear()
            batch, self._to_publish = self._to_publish, {}
            if not batch:
                continue
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for workspace_id, seq in batch.items():
                        pipe.publish(EVENTS_CHANNEL, f"{workspace_id} {seq}")
                    await pipe.execute()
            except Exception as exc:  # noqa: BLE001 - never fails a write; readers poll meanwhile
                log.debug("realtime publish failed: %s", exc)
                # Keep the wake-ups and retry: published late they are still correct.
                for workspace_id, seq in batch.items():
                    if seq > self._to_publish.get(workspace_id, 0):
                        self._to_publish[workspace_id] = seq
                await asyncio.sleep(self.options.poll_seconds / 2)
                self._publish_wake.set()

    async def _listen_loop(self) -> None:
        delay = 0.1
        while not self._stopping:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(EVENTS_CHANNEL, EPHEMERAL_CHANNEL)
                self._set_state("ok")
                delay = 0.1
                while not self._stopping:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                    if message is None:
                        await pubsub.ping()  # notice a silently dead connection
                        continue
                    self._on_message(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reconnect with backoff
                self._set_state(f"unavailable: {type(exc).__name__}")
            finally:
                try:
                    await pubsub.aclose()
                except Exception:  # noqa: BLE001
                    pass
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)

    def _on_message(self, message: dict[str, Any]) -> None:
        if message.get("type") != "message":
            return
        channel = message["channel"]
        channel = channel.decode() if isinstance(channel, bytes) else channel
        data = message["data"]
        if channel == EVENTS_CHANNEL:
            workspace_id, _, seq = (data.decode() if isinstance(data, bytes) else data).partition(" ")
            if seq.isdigit():
                self.publish_local(workspace_id, int(seq))
        elif channel == EPHEMERAL_CHANNEL:
            try:
                body = msgspec.json.decode(data)
            except msgspec.DecodeError:
                return
            if body.get("o") != self.origin:
                audience = body.get("a")
                self.feeds.broadcast(body["w"], body["m"], tuple(audience) if audience is not None else None)


def make_hub(settings: Settings, db: Database) -> Hub:
    options = RealtimeOptions.from_env({**os.environ, **settings.extra})
    hub: Hub = RedisHub(settings.redis_url, db, options) if settings.redis_url else Hub(db, options)
    db.on_commit(hub.after_commit)
    return hub
