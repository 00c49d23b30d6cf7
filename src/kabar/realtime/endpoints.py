"""Realtime over HTTP: the WebSocket (API.md "Realtime"), Server-Sent Events and polling.

WebSocket protocol (JSON text frames):
- client → server: ``{"op":"subscribe","since":<seq|null>}`` (once), ``{"op":"ping"}`` (answered
  with ``pong``), ``{"op":"typing","conversation_id":…,"state":"typing"|"paused"}``.
- server → client: ``{"op":"subscribed","since":N,"last_seq":M}``, then ``{"op":"event","seq",
  "type","data","created_at"}`` strictly in seq order, ``{"op":"resync","last_seq":M}`` (``since``
  is older than retention: reload state; the stream continues live from M), ``{"op":"ping"}``
  heartbeats, ``{"op":"typing",…}`` from other staff and from customers, ``{"op":"error",…}``.
- Close codes: 4401 bad credentials, 4403 not allowed, 4404 unknown workspace, 4008 the client
  fell too far behind (sent ``resync`` first), 4503 the database is unavailable.

Authentication is the same as for HTTP: ``Authorization: Bearer`` (session token, JWT or API key),
the session cookie (only from the same origin), or ``?token=`` since browsers cannot set headers
on a WebSocket.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import msgspec
from litestar import Request, WebSocket, get, websocket
from litestar.di import NamedDependency, Provide
from litestar.exceptions import WebSocketDisconnect
from litestar.params import FromPath, FromQuery
from litestar.response import ServerSentEvent, ServerSentEventMessage

from kabar.auth import visibility
from kabar.auth.scope import Scope
from kabar.db.engine import StorageUnavailable
from kabar.errors import Problem, bad_request, forbidden, invalid
from kabar.http import clamp_limit, credentials, provide_scope, runtime_of
from kabar.observability.middleware import workspace_id_var
from kabar.realtime import repository as repo
from kabar.realtime import service
from kabar.realtime.feed import Ephemeral, SocketSubscription, StreamSubscription, ws_message
from kabar.realtime.service import LogEvent
from kabar.realtime.transport import raw_send, raw_writer

log = logging.getLogger("kabar.realtime")
_json = msgspec.json.Encoder()
TYPING_MIN_INTERVAL = 1.0  # seconds between two typing messages of one socket for one conversation


def _frame(message: dict[str, Any]) -> str:
    return _json.encode(message).decode()


PONG = ws_message({"op": "pong"})


# -- polling ----------------------------------------------------------------------------------


@get("/v1/workspaces/{ws:str}/events", dependencies={"ctx": Provide(provide_scope)}, tags=["realtime"])
async def list_events(
    request: Request, ctx: NamedDependency[Scope], since: FromQuery[int | None] = None, limit: FromQuery[int | None] = None
) -> dict[str, Any]:
    """Events after ``since`` in seq order, for polling clients and resync checks.

    ``next_since`` is where the next poll starts; ``resync`` is true when ``since`` is older than
    retention (events were deleted: reload state, then poll from ``next_since``).
    """
    ctx.require("events.read")
    if since is not None and since < 0:
        raise invalid("since", "must be 0 or more")
    page_size = clamp_limit(limit, default=100, maximum=1000)
    return await runtime_of(request).db.read(service.read_page, ctx, since, page_size)


# -- Server-Sent Events -----------------------------------------------------------------------


@get("/v1/workspaces/{ws:str}/events/stream", dependencies={"ctx": Provide(provide_scope)}, tags=["realtime"])
async def stream_events(request: Request, ctx: NamedDependency[Scope], since: FromQuery[int | None] = None) -> ServerSentEvent:
    """The log as Server-Sent Events: ``id`` = seq, data = ``{seq, type, data, created_at}``.

    Resumes after ``Last-Event-ID`` (sent by EventSource on reconnect) or ``since``; without
    either, starts live. Named events: ``subscribed``, ``resync``, ``typing``.
    """
    ctx.require("events.read")
    last_event_id = request.headers.get("last-event-id")
    if last_event_id:
        if not last_event_id.strip().isdigit():
            raise bad_request("Last-Event-ID must be an event seq")
        since = int(last_event_id)
    if since is not None and since < 0:
        raise invalid("since", "must be 0 or more")
    runtime = runtime_of(request)
    sub = StreamSubscription(runtime.hub, ctx.workspace_id, ctx.viewer)
    try:
        resync = await sub.start(since)
    except BaseException:
        sub.close()
        raise
    ping = runtime.hub.options.ping_seconds

    async def messages() -> Any:
        try:
            yield ServerSentEventMessage(event="subscribed", data=_frame({"since": sub.cursor, "last_seq": sub.last_seq}), retry=1000)
            if resync:
                yield ServerSentEventMessage(event="resync", data=_frame({"last_seq": resync.last_seq}))
            while True:
                items = await sub.next_items(ping)
                if items is None:
                    yield ServerSentEventMessage(comment="ping")
                    continue
                for item in items:
                    if isinstance(item, LogEvent):
                        yield ServerSentEventMessage(id=item.seq, data=item.sse_data)
                    elif isinstance(item, Ephemeral):
                        yield ServerSentEventMessage(event=str(item.message.get("op", "ephemeral")), data=_frame(item.message))
                    else:
                        yield ServerSentEventMessage(event="resync", data=_frame({"last_seq": item.last_seq}))
                        if item.fatal:
                            return
        finally:
            sub.close()

    return ServerSentEvent(messages(), headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


# -- WebSocket --------------------------------------------------------------------------------


def _same_origin(socket: WebSocket) -> bool:
    """Cookie-authenticated sockets must come from our own pages (cross-site WebSocket hijacking)."""
    origin = socket.headers.get("origin")
    if not origin:
        return True  # not a browser
    return urlsplit(origin).netloc == socket.headers.get("host", "")


@websocket("/v1/workspaces/{ws:str}/realtime")
async def realtime_socket(socket: WebSocket, ws: FromPath[str]) -> None:
    runtime = runtime_of(socket)
    await socket.accept()
    try:
        token, via_cookie = credentials(socket)
        if via_cookie and not _same_origin(socket):
            raise forbidden("Cross-origin WebSocket with a session cookie; use ?token=")
        ctx = await runtime.auth.scope(token, ws, via_cookie=via_cookie)
        workspace_id_var.set(ws)  # this socket's log lines name its workspace
        ctx.require("events.read")
    except Problem as problem:
        await _refuse(socket, problem.status, problem.title, problem.detail)
        return
    except StorageUnavailable:
        await _refuse(socket, 503, "Service unavailable", "The database is unavailable; reconnect shortly")
        return
    session = SocketSession(runtime, ctx, socket)
    try:
        await session.run()
    finally:
        session.close()


async def _refuse(socket: WebSocket, status: int, title: str, detail: str) -> None:
    try:
        await socket.send_text(_frame({"op": "error", "status": status, "title": title, "detail": detail}))
        await socket.close(code=4000 + status, reason=title[:100])
    except Exception:  # noqa: BLE001 - the client is already gone
        pass


class SocketSession:
    """One WebSocket. The server's task for the connection runs the receive loop (client ops);
    everything sent to the client goes through the ``SocketSubscription``, which the feed pushes
    events to directly (``kabar.realtime.feed``): no other task per idle socket."""

    __slots__ = ("runtime", "ctx", "socket", "sub", "task", "ending", "subscribed", "_typing_sent", "_audiences")

    def __init__(self, runtime: Any, ctx: Scope, socket: WebSocket):
        self.runtime = runtime
        self.ctx = ctx
        self.socket = socket
        # The server's own send and transport when it exposes them (uvicorn), else Litestar's send.
        send = raw_send(socket.scope) or socket.send
        self.sub = SocketSubscription(runtime.hub, ctx.workspace_id, ctx.viewer, send, self._ended, raw_writer(socket.scope))
        self.task: asyncio.Task[Any] | None = None
        self.ending = False
        self.subscribed = False
        self._typing_sent: dict[str, float] | None = None
        self._audiences: dict[str, tuple[float, tuple[str, Any]]] | None = None

    def _ended(self) -> None:
        """The subscription gave up on the client (too far behind, or a send failed): stop reading."""
        self.ending = True
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()

    def reply(self, message: dict[str, Any]) -> None:
        self.sub.push(ws_message(message))

    async def run(self) -> None:
        self.task = asyncio.current_task()
        try:
            await self._receive_loop()
        except asyncio.CancelledError:
            if not self.ending:
                raise
            self.task.uncancel()  # type: ignore[union-attr]  # our own stop, not the server's
        if self.sub.close_code:
            try:
                async with asyncio.timeout(self.runtime.hub.options.send_timeout):
                    await self.socket.close(code=self.sub.close_code, reason="too far behind: resync")
            except Exception:  # noqa: BLE001 - gone already
                pass

    async def _receive_loop(self) -> None:
        while not self.ending:
            try:
                text = await self.socket.receive_text()
            except WebSocketDisconnect:
                return
            try:
                message = msgspec.json.decode(text)
                if not isinstance(message, dict):
                    raise ValueError("not an object")
            except (msgspec.DecodeError, ValueError):
                self.reply({"op": "error", "status": 400, "detail": "Send JSON objects with an 'op'"})
                continue
            op = message.get("op")
            if op == "subscribe":
                await self._subscribe(message)
            elif op == "ping":
                self.sub.push(PONG)
            elif op == "pong":
                pass
            elif op == "typing":
                await self._typing(message)
            else:
                self.reply({"op": "error", "status": 400, "detail": f"Unknown op {op!r}"})

    async def _subscribe(self, message: dict[str, Any]) -> None:
        since = message.get("since")
        if self.subscribed:
            self.reply({"op": "error", "status": 409, "detail": "Already subscribed"})
            return
        if since is not None and (not isinstance(since, int) or isinstance(since, bool) or since < 0):
            self.reply({"op": "error", "status": 422, "detail": "since must be a seq (integer >= 0) or null"})
            return
        self.subscribed = True
        try:
            resync = await self.sub.start(since)
        except StorageUnavailable:
            await _refuse(self.socket, 503, "Service unavailable", "The database is unavailable; reconnect shortly")
            raise WebSocketDisconnect(detail="storage unavailable") from None
        # No await from start() to begin(): these two frames precede every event.
        if resync:
            self.reply({"op": "resync", "last_seq": resync.last_seq})
        self.reply({"op": "subscribed", "since": self.sub.cursor, "last_seq": self.sub.last_seq})
        self.sub.begin()

    async def _typing(self, message: dict[str, Any]) -> None:
        conversation_id = message.get("conversation_id")
        state = message.get("state", "typing")
        if not isinstance(conversation_id, str) or state not in ("typing", "paused"):
            self.reply({"op": "error", "status": 422, "detail": "typing needs conversation_id and state typing|paused"})
            return
        now = time.monotonic()
        key = f"{conversation_id}:{state}"
        sent = self._typing_sent = self._typing_sent or {}
        if now - sent.get(key, 0.0) < TYPING_MIN_INTERVAL:
            return  # throttled: the others already know
        found = await self._conversation_audience(conversation_id, now)
        if found is None or not self.ctx.viewer.sees(found[1]):
            self.reply({"op": "error", "status": 404, "detail": "Conversation not found"})
            return
        sent[key] = now
        contact_id, aud = found
        await self.runtime.hub.publish_ephemeral(
            self.ctx.workspace_id,
            {
                "op": "typing",
                "conversation_id": conversation_id,
                "contact_id": contact_id,
                "sender_type": "user" if self.ctx.user_id else "api",
                "user_id": self.ctx.user_id,
                "state": state,
            },
            audience=aud,
            exclude=self.sub,
        )

    async def _conversation_audience(self, conversation_id: str, now: float) -> tuple[str, Any] | None:
        cache = self._audiences = self._audiences or {}
        cached = cache.get(conversation_id)
        if cached and now - cached[0] < 30:
            return cached[1]
        row = await self.runtime.db.read(repo.conversation_audience, self.ctx, conversation_id)
        if row is None:
            return None
        value = (row.contact_id, visibility.audience(row))
        cache[conversation_id] = (now, value)
        return value

    def close(self) -> None:
        self.sub.close()


ROUTES = [list_events, stream_events, realtime_socket]


def _register_startup() -> None:
    from kabar.app import STARTUP_HOOKS
    from kabar.realtime.tasks import on_startup

    if on_startup not in STARTUP_HOOKS:
        STARTUP_HOOKS.append(on_startup)


_register_startup()
