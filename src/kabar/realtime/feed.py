"""Fan-out from the event log to subscribers (WebSocket and SSE), one reader per workspace.

- ``WorkspaceFeed``: one per workspace with local subscribers. Woken by the hub ("workspace W has
  events up to seq N") or by its poll timer, it reads each new batch of the log **once** and hands
  the same ``LogEvent`` objects (their frame encoded once) to every subscriber. A thousand sockets
  on a workspace cost one query per wake-up, not a thousand.
- ``Subscription``: one client's position in the log. It starts at ``since``, catches up from the
  log itself (pages of ``seq in (since, p0]``, where ``p0`` is the feed's position at the moment it
  attached), then takes the feed's batches (``seq > p0``). Attaching and reading ``p0`` happen
  without yielding to the event loop, so the two ranges meet exactly: no gap, no repeat. A seq
  check when sending drops anything at or below the cursor as a second guard.
- ``SocketSubscription`` (WebSocket) is *pushed* to: the feed's fan-out loop sends each event to
  every caught-up socket itself, with no task, queue or wake-up per socket. A send that cannot
  complete at once (the client's TCP window is full) is handed to a per-socket "pump" task, which
  exists only while that socket has a backlog (or is replaying its catch-up) and then ends. One
  heartbeat task per process pings the sockets that were idle for a whole period.
  Measured (``tests/realtime/measure.py``): this replaced a sender task per socket woken through an
  ``asyncio.Event`` and a lock and timeout per send, which cost most of the fan-out time.
- ``StreamSubscription`` (SSE) is *pulled*: its response generator waits for items.
- The backlog per subscriber is bounded: the feed never blocks; a subscriber that falls more than
  ``queue_size`` items behind is marked overflowed and detached, and its transport sends
  ``resync`` and closes. A slow consumer therefore costs the others nothing.

``KABAR_REALTIME_TRACE=<file>`` appends one line per fan-out (first and last seq, subscribers,
monotonic times of the commit notification, the end of the log read and the end of the fan-out
loop, sends left to pump tasks, CPU seconds of the loop): server-side time, separate from any
client's. Off by default; it costs nothing then.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import types
from collections import deque
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import msgspec

from kabar.auth.scope import system_scope
from kabar.auth.visibility import Viewer
from kabar.realtime import repository as repo
from kabar.realtime.service import LogEvent, needs_resync, to_events, view
from kabar.realtime.transport import RawWriter

if TYPE_CHECKING:
    from kabar.realtime.hub import Hub

log = logging.getLogger("kabar.realtime")

BATCH = 500  # events per log read
TRACE_PATH = os.environ.get("KABAR_REALTIME_TRACE") or None
_encode = msgspec.json.Encoder().encode


def ws_message(message: dict[str, Any]) -> dict[str, str]:
    """An ASGI ``websocket.send`` message carrying ``message`` as a JSON text frame."""
    return {"type": "websocket.send", "text": _encode(message).decode()}


PING = ws_message({"op": "ping"})


class Ephemeral:
    """A message that is not logged (typing): delivered to whoever is connected now."""

    __slots__ = ("message", "_ws")

    def __init__(self, message: dict[str, Any]):
        self.message = message
        self._ws: dict[str, str] | None = None

    @property
    def ws(self) -> dict[str, str]:
        """Encoded once for all the sockets it goes to."""
        if self._ws is None:
            self._ws = ws_message(self.message)
        return self._ws


class Resync:
    """The subscriber cannot be caught up: reload state. ``fatal``: then close the connection."""

    __slots__ = ("last_seq", "fatal")

    def __init__(self, last_seq: int, fatal: bool):
        self.last_seq = last_seq
        self.fatal = fatal


class WorkspaceFeed:
    def __init__(self, hub: Hub, workspace_id: str):
        self.hub = hub
        self.workspace_id = workspace_id
        self.scope = system_scope(workspace_id)  # the workspace's log, read for every subscriber
        self.position = 0  # every event <= position has been handed to the attached subscribers
        self.subscribers: set[Subscription] = set()
        self.users = 0  # subscriptions holding this feed (attached or still starting)
        self._ready = asyncio.Event()
        self._wake = asyncio.Event()
        self._woken_at = 0.0  # for the trace: when the first notification of this batch came
        self._unlisten = hub.subscribe(workspace_id, self._notified)
        self._task = asyncio.create_task(self._run(), name=f"realtime-feed-{workspace_id}")

    def _notified(self, workspace_id: str, seq: int) -> None:
        if seq > self.position:
            if TRACE_PATH and not self._wake.is_set():
                self._woken_at = time.monotonic()
            self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    async def ready(self) -> None:
        await self._ready.wait()

    def attach(self, sub: Subscription) -> int:
        """Attach and return the position: ``sub`` gets every event above it from the feed."""
        self.subscribers.add(sub)
        return self.position

    def detach(self, sub: Subscription) -> None:
        self.subscribers.discard(sub)

    def stop(self) -> None:
        self._unlisten()
        self._task.cancel()

    async def _run(self) -> None:
        delay = 0.1
        while True:
            try:
                self.position = await self.hub.db.read(repo.last_seq, self.scope)
                break
            except Exception as exc:  # noqa: BLE001 - keep trying; subscribers wait in ready()
                log.warning("realtime feed %s cannot read the log yet: %s", self.workspace_id, exc)
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)
        self._ready.set()
        while True:
            try:
                async with asyncio.timeout(self.hub.poll_interval):  # unlike wait_for, no task per wait
                    await self._wake.wait()
            except TimeoutError:
                pass  # poll: Redis is down, or the safety net for a lost notification
            self._wake.clear()
            try:
                await self._read_new()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a database blip: the next wake-up retries
                log.warning("realtime feed %s read failed: %s", self.workspace_id, exc)
                await asyncio.sleep(0.5)

    async def _read_new(self) -> None:
        while self.subscribers:
            rows = await self.hub.db.read(repo.read_after, self.scope, self.position, BATCH)
            if not rows:
                return
            events = to_events(rows)
            self.position = events[-1].seq
            if TRACE_PATH:
                self._fan_out_traced(events)
            else:
                for sub in list(self.subscribers):
                    sub.offer(events)
            if len(rows) < BATCH:
                return

    def _fan_out_traced(self, events: list[LogEvent]) -> None:
        read_done, cpu = time.monotonic(), time.thread_time()
        subs = list(self.subscribers)
        for sub in subs:
            sub.offer(events)
        done, cpu = time.monotonic(), time.thread_time() - cpu
        deferred = sum(1 for sub in subs if getattr(sub, "pump", None) is not None)
        with open(TRACE_PATH, "a") as trace:  # type: ignore[arg-type]
            trace.write(f"{events[0].seq} {events[-1].seq} {len(subs)} {self._woken_at:.6f} {read_done:.6f} {done:.6f} {deferred} {cpu:.6f}\n")

    def broadcast(self, message: dict[str, Any], audience: tuple[str, ...] | None, exclude: Any = None) -> None:
        item = Ephemeral(message)
        for sub in list(self.subscribers):
            if sub is not exclude and sub.viewer.sees(audience):
                sub.offer_ephemeral(item)


class FeedRegistry:
    """The feeds of this process, created with their first subscriber and stopped with the last;
    and the one heartbeat task for every socket of the process."""

    def __init__(self, hub: Hub):
        self.hub = hub
        self.feeds: dict[str, WorkspaceFeed] = {}
        self._heartbeat: asyncio.Task[None] | None = None

    def acquire(self, workspace_id: str) -> WorkspaceFeed:
        feed = self.feeds.get(workspace_id)
        if feed is None:
            feed = self.feeds[workspace_id] = WorkspaceFeed(self.hub, workspace_id)
        feed.users += 1
        if self._heartbeat is None:
            self._heartbeat = asyncio.create_task(self._beat(), name="realtime-heartbeat")
        return feed

    def release(self, feed: WorkspaceFeed) -> None:
        feed.users -= 1
        if feed.users <= 0 and self.feeds.get(feed.workspace_id) is feed:
            del self.feeds[feed.workspace_id]
            feed.stop()

    async def _beat(self) -> None:
        """Every ``ping_seconds``, each socket that sent nothing during the period gets a ping
        (so an idle socket hears from us at least every two periods)."""
        while True:
            await asyncio.sleep(self.hub.options.ping_seconds)
            for feed in list(self.feeds.values()):
                for sub in list(feed.subscribers):
                    sub.heartbeat()

    def wake_all(self) -> None:
        for feed in list(self.feeds.values()):
            feed.wake()

    def broadcast(self, workspace_id: str, message: dict[str, Any], audience: tuple[str, ...] | None, exclude: Any = None) -> None:
        feed = self.feeds.get(workspace_id)
        if feed is not None:
            feed.broadcast(message, audience, exclude)

    @property
    def subscriber_count(self) -> int:
        return sum(len(feed.subscribers) for feed in self.feeds.values())

    async def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
        for feed in list(self.feeds.values()):
            feed.stop()
        self.feeds.clear()


class Subscription:
    """One client's ordered, filtered view of a workspace's log (see the module docstring)."""

    __slots__ = ("hub", "workspace_id", "scope", "viewer", "queue_size", "cursor", "catchup_to", "last_seq", "overflowed", "pending", "_feed")

    def __init__(self, hub: Hub, workspace_id: str, viewer: Viewer, queue_size: int | None = None):
        self.hub = hub
        self.workspace_id = workspace_id
        # The log is read as the workspace's (as the shared feed reads it); ``viewer`` filters it.
        self.scope = system_scope(workspace_id)
        self.viewer = viewer
        self.queue_size = queue_size or hub.options.queue_size
        self.cursor = 0  # highest seq delivered to the client or skipped as not visible
        self.catchup_to = 0
        self.last_seq = 0
        self.overflowed = False
        self.pending: deque[Any] = deque()
        self._feed: WorkspaceFeed | None = None

    async def start(self, since: int | None) -> Resync | None:
        """Position the subscription after ``since`` (None: from the current last seq).

        Returns a ``Resync`` when ``since`` cannot be served; the subscription then continues live
        from the current last seq, and the client reloads its state meanwhile.
        """
        feed = self._feed = self.hub.feeds.acquire(self.workspace_id)
        oldest, last = await self.hub.db.read(repo.bounds, self.scope)
        await feed.ready()
        # No await from here to attach(): the feed's position cannot move in between.
        resync = needs_resync(since, oldest, last)
        self.cursor = last if since is None or resync else since
        self.last_seq = last
        self.catchup_to = feed.attach(self)
        return Resync(last, fatal=False) if resync else None

    def offer(self, events: list[LogEvent]) -> None:
        """Called by the feed with each new batch; never blocks."""
        raise NotImplementedError

    def offer_ephemeral(self, item: Ephemeral) -> None:
        raise NotImplementedError

    def heartbeat(self) -> None:
        """Called by the heartbeat task every ``ping_seconds``."""

    def _queue(self, items: Any) -> None:
        self.pending.extend(items)
        if len(self.pending) > self.queue_size:
            self.overflowed = True
            self.pending.clear()
            if self._feed is not None:
                self._feed.detach(self)

    async def _catch_up(self) -> list[LogEvent]:
        rows = await self.hub.db.read(repo.read_after, self.scope, self.cursor, BATCH, self.catchup_to)
        if not rows or rows[0].seq != self.cursor + 1:
            # Retention deleted what we were about to replay.
            self.catchup_to = self.cursor
            self.overflowed = True
            return []
        events = to_events(rows)
        self.cursor = events[-1].seq
        viewer = self.viewer
        return [seen for ev in events if (seen := view(viewer, ev)) is not None]

    def close(self) -> None:
        if self._feed is not None:
            self._feed.detach(self)
            self.hub.feeds.release(self._feed)
            self._feed = None


class StreamSubscription(Subscription):
    """Pulled by its reader (SSE): ``next_items`` waits for the next batch."""

    __slots__ = ("_wake",)

    def __init__(self, hub: Hub, workspace_id: str, viewer: Viewer, queue_size: int | None = None):
        super().__init__(hub, workspace_id, viewer, queue_size)
        self._wake = asyncio.Event()

    def offer(self, events: list[LogEvent]) -> None:
        viewer = self.viewer
        self._queue(seen for ev in events if (seen := view(viewer, ev)) is not None)
        self._wake.set()

    def offer_ephemeral(self, item: Ephemeral) -> None:
        self._queue((item,))
        self._wake.set()

    async def next_items(self, timeout: float) -> list[LogEvent | Ephemeral | Resync] | None:
        """The next items to send, in seq order; None when ``timeout`` passed with nothing (ping)."""
        while True:
            if self.overflowed:
                return [Resync(max(self.cursor, self.last_seq), fatal=True)]
            if self.cursor < self.catchup_to:
                items: list[Any] = await self._catch_up()
                if items:
                    return items
                continue
            if not self.pending:
                self._wake.clear()
                try:
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                except TimeoutError:
                    return None
                continue
            out: list[LogEvent | Ephemeral | Resync] = []
            while self.pending:
                item = self.pending.popleft()
                if isinstance(item, LogEvent):
                    if item.seq <= self.cursor:
                        continue
                    self.cursor = item.seq
                out.append(item)
            if out:
                return out


@types.coroutine
def _resume(coro: Any, waiting: Any) -> Generator[Any, Any, Any]:
    """Finish a coroutine that was stepped by hand and suspended on ``waiting``: exactly what the
    task awaiting it would have done (results, exceptions and cancellation go to it)."""
    while True:
        try:
            value = yield waiting
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # noqa: BLE001 - cancellation or a timeout, passed on
            try:
                waiting = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
            continue
        try:
            waiting = coro.send(value)
        except StopIteration as stop:
            return stop.value


class SocketSubscription(Subscription):
    """Pushed to by the feed (WebSocket): see the module docstring.

    ``send`` is the connection's ASGI send; ``on_end`` is called once when the subscription gives
    up on the client (too far behind: ``close_code`` is then 4008; a send failed or timed out).
    """

    __slots__ = ("send", "raw", "on_end", "pump", "closed", "close_code", "active")

    def __init__(
        self,
        hub: Hub,
        workspace_id: str,
        viewer: Viewer,
        send: Callable[[Any], Any],
        on_end: Callable[[], None],
        raw: RawWriter | None = None,
        queue_size: int | None = None,
    ):
        super().__init__(hub, workspace_id, viewer, queue_size)
        self.send = send
        self.raw = raw  # the transport fast path, when the server allows it (kabar.realtime.transport)
        self.on_end = on_end
        self.pump: asyncio.Task[None] | None = None  # only while there is a backlog
        self.closed = False
        self.close_code = 0
        self.active = False  # sent something since the last heartbeat

    # -- what the feed, the heartbeat and the connection call ----------------------------------

    def offer(self, events: list[LogEvent]) -> None:
        if self.closed:
            return
        viewer = self.viewer
        if self.pump is None and self.cursor >= self.catchup_to:
            raw = self.raw
            if raw is not None and raw.ready():
                frames = []
                for ev in events:
                    if ev.seq > self.cursor:
                        self.cursor = ev.seq
                        seen = view(viewer, ev)
                        if seen is not None:
                            frames.append(seen.frame)
                if frames:
                    self.active = True
                    try:
                        raw.write(frames[0] if len(frames) == 1 else b"".join(frames))
                    except Exception as exc:  # noqa: BLE001 - the connection is gone
                        log.debug("realtime write failed: %r", exc)
                        self._end()
                return
            for i, ev in enumerate(events):
                if ev.seq <= self.cursor:
                    continue
                self.cursor = ev.seq
                seen = view(viewer, ev)
                if seen is not None and not self._send_now(seen.message):
                    if not self.closed:  # the send is waiting: the pump takes the rest
                        self._queue(s for e in events[i + 1 :] if (s := view(viewer, e)) is not None)
                    return
        else:
            self._queue(seen for ev in events if (seen := view(viewer, ev)) is not None)
            self._start_pump()

    def offer_ephemeral(self, item: Ephemeral) -> None:
        self.push(item.ws)

    def push(self, message: dict[str, Any]) -> None:
        """Send an ASGI message after everything already queued for this socket."""
        if self.closed:
            return
        if self.pump is None:
            self._send_now(message)
        else:
            self._queue((message,))

    def begin(self) -> None:
        """After ``start``: replay the catch-up range (in the pump), then go live."""
        self._start_pump()

    def heartbeat(self) -> None:
        if not self.active and self.pump is None:
            self.push(PING)
        self.active = False

    def close(self) -> None:
        self.closed = True
        if self.pump is not None and self.pump is not asyncio.current_task():
            self.pump.cancel()
        self.pump = None
        self.pending.clear()
        super().close()

    # -- sending ---------------------------------------------------------------------------------

    def _send_now(self, message: dict[str, Any]) -> bool:
        """Run the server's send right here. With uvicorn it completes without suspending (the
        frame goes to the transport's buffer), so the common case costs no task and no wake-up.
        If it suspends, the unfinished send goes to the pump, which also takes later items.
        Returns True when the send completed."""
        self.active = True
        coro = self.send(message)
        try:
            waiting = coro.send(None)
        except StopIteration:
            return True
        except Exception as exc:  # noqa: BLE001 - the connection is gone
            log.debug("realtime send failed: %r", exc)
            self._end()
            return False
        self.pump = asyncio.get_running_loop().create_task(self._pump(coro, waiting))
        return False

    def _start_pump(self) -> None:
        if self.pump is None and not self.closed and (self.pending or self.overflowed or self.cursor < self.catchup_to):
            self.pump = asyncio.get_running_loop().create_task(self._pump(None, None))

    async def _timed(self, awaitable: Any) -> None:
        async with asyncio.timeout(self.hub.options.send_timeout):
            await awaitable

    async def _pump(self, coro: Any, waiting: Any) -> None:
        """Drain this socket's backlog in order (catch-up pages first), then end."""
        try:
            if coro is not None:
                await self._timed(_resume(coro, waiting))
            while not self.closed:
                if self.overflowed:
                    text = msgspec.json.encode({"op": "resync", "last_seq": max(self.cursor, self.last_seq)}).decode()
                    await self._timed(self.send({"type": "websocket.send", "text": text}))
                    self.close_code = 4008  # too far behind: the connection closes with it
                    break
                if self.cursor < self.catchup_to:
                    for ev in await self._catch_up():
                        self.active = True
                        await self._timed(self.send(ev.message))
                    continue
                if not self.pending:
                    self.pump = None  # no await since the check: the next offer sends directly
                    return
                item = self.pending.popleft()
                if isinstance(item, LogEvent):
                    if item.seq <= self.cursor:
                        continue
                    self.cursor = item.seq
                    item = item.message
                self.active = True
                await self._timed(self.send(item))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - send failed or timed out (dead client), storage down
            log.debug("realtime socket dropped: %r", exc)
        self.pump = None
        self._end()

    def _end(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.pending.clear()
        if self._feed is not None:
            self._feed.detach(self)
        self.on_end()
