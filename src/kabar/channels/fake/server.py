"""A fake WhatsApp provider, Kapso-compatible, on 127.0.0.1 — for the demo, the tests and the benchmark.

It speaks Kapso's Meta proxy (``POST /meta/whatsapp/{version}/{phone_number_id}/messages``,
``…/media``, ``GET …/{media_id}``), records every request, and posts correctly signed Kapso v2
webhooks back to Kabar: ``whatsapp.message.sent``, ``delivered`` and ``read`` after configurable
delays, each carrying the raw Meta status history with our ``biz_opaque_callback_data``.

Failure injection (``POST /_fake/failures``, consumed one per send, in order):
``{"status": 500}``, ``{"status": 429, "retry_after": 2}``, ``{"status": 400, "code": 131047}``
(any Meta error code), ``{"timeout": 5}`` (accept the message, then answer only after 5 s — the
caller times out without knowing it was accepted) and ``{"fail_after_accept": {"code": 131026}}``
(accept, then report ``failed`` by webhook). Inspect with ``GET /_fake/messages``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from litestar import Litestar, Request, Response, get, post
from litestar.params import FromPath, JSONBody

from kabar.channels.fake import payloads as p

log = logging.getLogger("kabar.fake_provider")
PROXY = "/meta/whatsapp/{version:str}"
ERROR_TITLES = {
    131047: "Re-engagement message",
    131026: "Message Undeliverable",
    100: "Invalid parameter",
    131000: "Something went wrong",
    130429: "Rate limit hit",
    131056: "(Business Account, Consumer Account) pair rate limit hit",
}


@dataclass
class FakeState:
    webhook_url: str | None
    secret: str
    api_key: str | None = None
    delays: dict[str, float] = field(default_factory=lambda: {"sent": 0.05, "delivered": 0.15, "read": 0.4})
    statuses: bool = True  # post sent/delivered/read webhooks back
    secrets: dict[str, str] = field(default_factory=dict)  # per phone_number_id, overriding ``secret``
    failures: deque[dict[str, Any]] = field(default_factory=deque)
    messages: list[dict[str, Any]] = field(default_factory=list)  # accepted sends
    requests: list[dict[str, Any]] = field(default_factory=list)  # every send request, with its outcome
    reads: list[dict[str, Any]] = field(default_factory=list)  # mark-as-read calls
    webhooks: list[dict[str, Any]] = field(default_factory=list)  # what we posted back, with Kabar's answer
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)

    def reset(self) -> None:
        for items in (self.failures, self.messages, self.requests, self.reads, self.webhooks):
            items.clear()


def _graph_error(status: int, code: int, title: str | None = None, details: str | None = None, headers: dict[str, str] | None = None) -> Response:
    title = title or ERROR_TITLES.get(code, "Error")
    body = {"error": {"message": f"(#{code}) {title}", "type": "OAuthException", "code": code,
                      "error_data": {"messaging_product": "whatsapp", "details": details or title}, "fbtrace_id": secrets.token_hex(6)}}
    return Response(body, status_code=status, headers=headers or {})


class FakeProvider:
    def __init__(self, *, webhook_url: str | None, secret: str, api_key: str | None = None,
                 delays: dict[str, float] | None = None, statuses: bool = True):
        self.state = FakeState(webhook_url=webhook_url, secret=secret, api_key=api_key, statuses=statuses)
        if delays:
            self.state.delays.update(delays)
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None
        self._server: uvicorn.Server | None = None
        self._serve_task: asyncio.Task[None] | None = None
        self.url = ""
        self.app = self._build_app()

    # -- HTTP app -----------------------------------------------------------------------------

    def _build_app(self) -> Litestar:
        fake = self
        state = self.state

        def authorized(request: Request) -> bool:
            return not state.api_key or request.headers.get("x-api-key") == state.api_key

        @post(PROXY + "/{pnid:str}/messages", status_code=200)
        async def send(request: Request, pnid: FromPath[str]) -> Response:
            body = await request.json()
            record = {"at": time.time(), "phone_number_id": pnid, "body": body}
            state.requests.append(record)
            if not authorized(request):
                record["outcome"] = "unauthorized"
                return _graph_error(401, 0, "Invalid API key")
            if body.get("status") == "read":
                state.reads.append({"at": time.time(), "message_id": body.get("message_id"), "typing": "typing_indicator" in body})
                record["outcome"] = "read"
                return Response({"success": True})
            failure = state.failures.popleft() if state.failures else {}
            record["outcome"] = failure or "accepted"
            if failure.get("status"):
                status = int(failure["status"])
                if status == 429:
                    headers = {"Retry-After": str(failure.get("retry_after", 1)), "X-RateLimit-Remaining": "0"}
                    return Response({"error": "Rate limit exceeded", "message": "You have exceeded the rate limit."}, status_code=429, headers=headers)
                code = int(failure.get("code", 131000 if status >= 500 else 100))
                return _graph_error(status, code, failure.get("title"), failure.get("details"))
            wamid = p.new_wamid()
            # ``to`` is a phone number; ``recipient`` a business-scoped user id (``to`` wins).
            to, recipient = str(body.get("to") or ""), str(body.get("recipient") or "")
            if not to and not recipient:
                return _graph_error(400, 100, "Invalid parameter", "Either to or recipient is required")
            state.messages.append({"at": time.time(), "id": wamid, "phone_number_id": pnid, "to": to, "recipient": "" if to else recipient, "body": body})
            fake._spawn(fake._report(pnid, wamid, to, body, failure.get("fail_after_accept")))
            if failure.get("timeout"):
                await asyncio.sleep(float(failure["timeout"]))  # accepted, but the answer comes too late
            contact = {"input": to, "wa_id": to.lstrip("+")} if to else {"input": recipient, "wa_id": "", "user_id": recipient}
            return Response({"messaging_product": "whatsapp", "contacts": [contact], "messages": [{"id": wamid}]})

        @post(PROXY + "/{pnid:str}/media", status_code=200)
        async def upload(request: Request, pnid: FromPath[str]) -> Response:
            if not authorized(request):
                return _graph_error(401, 0, "Invalid API key")
            form = await request.form()
            file = form.get("file")
            content = await file.read() if file is not None else b""
            media_id = str(10**15 + len(state.media) + secrets.randbelow(10**9))
            state.media[media_id] = (content, str(form.get("type") or "application/octet-stream"))
            return Response({"id": media_id})

        @get(PROXY + "/{media_id:str}")
        async def media_info(request: Request, media_id: FromPath[str]) -> Response:
            if not authorized(request):
                return _graph_error(401, 0, "Invalid API key")
            if media_id not in state.media:
                return _graph_error(404, 100, "Unsupported get request")
            content, mime = state.media[media_id]
            return Response({"messaging_product": "whatsapp", "id": media_id, "mime_type": mime, "file_size": len(content),
                             "url": f"{fake.url}/_fake/media/{media_id}"})

        @get("/_fake/media/{media_id:str}")
        async def media_bytes(media_id: FromPath[str]) -> Response:
            if media_id not in state.media:
                return Response(b"", status_code=404)
            content, mime = state.media[media_id]
            return Response(content, media_type=mime)

        @get("/_fake/messages")
        async def inspect() -> dict[str, Any]:
            return {"messages": state.messages, "requests": state.requests, "reads": state.reads, "webhooks": state.webhooks}

        @post("/_fake/failures", status_code=200)
        async def add_failures(data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
            state.failures.extend(data.get("failures") or [])
            return {"queued": len(state.failures)}

        @post("/_fake/config", status_code=200)
        async def configure(data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
            for name in ("webhook_url", "secret", "api_key", "statuses"):
                if name in data:
                    setattr(state, name, data[name])
            state.delays.update(data.get("delays") or {})
            state.secrets.update(data.get("secrets") or {})
            return {"ok": True}

        @post("/_fake/reset", status_code=200)
        async def reset() -> dict[str, Any]:
            state.reset()
            return {"ok": True}

        @post("/_fake/media", status_code=200)
        async def add_media(request: Request) -> dict[str, Any]:
            """Store a file as if a customer had sent it (for inbound media tests and the demo)."""
            media_id = str(10**15 + len(state.media) + secrets.randbelow(10**9))
            state.media[media_id] = (await request.body(), request.headers.get("content-type", "application/octet-stream"))
            return {"id": media_id}

        return Litestar(
            route_handlers=[send, upload, media_info, media_bytes, inspect, add_failures, configure, reset, add_media],
            debug=False,
            logging_config=None,
            request_max_body_size=32 * 1024 * 1024,
        )

    # -- webhooks back to Kabar ----------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report(self, pnid: str, wamid: str, to: str, body: dict[str, Any], fail: dict[str, Any] | None) -> None:
        state = self.state
        if not state.statuses:
            return
        callback = body.get("biz_opaque_callback_data")
        message = {k: v for k, v in body.items() if k in ("type", "text", "image", "video", "audio", "document", "template", "context", "reaction")}
        history: list[dict[str, Any]] = []
        if fail:
            plan = ["sent", "failed"]
        elif body.get("type") == "reaction":
            plan = ["sent"]  # WhatsApp reports only "sent" for a reaction
        else:
            plan = ["sent", "delivered", "read"]
        started = time.monotonic()
        for status in plan:
            delay = state.delays.get(status, state.delays.get("read", 0.4))
            await asyncio.sleep(max(0.0, started + delay - time.monotonic()))
            error = None
            if status == "failed":
                code = int((fail or {}).get("code", 131026))
                error = {"code": code, "title": ERROR_TITLES.get(code, "Error"), "message": ERROR_TITLES.get(code, "Error"),
                         "error_data": {"details": (fail or {}).get("details") or ERROR_TITLES.get(code, "Error")}}
            user_id = None if to else body.get("recipient")
            history.append(p.meta_status(wamid, status, to, callback=callback, error=error, user_id=user_id))
            doc = p.kapso_outbound(pnid=pnid, phone=to, wamid=wamid, statuses=list(history), message=message, user_id=user_id)
            await self.post_webhook(pnid, doc, f"whatsapp.message.{status}")

    async def post_webhook(self, pnid: str, doc: dict[str, Any], event: str, *, batch: int | None = None) -> int | None:
        """Sign and post one webhook to Kabar, retrying a few times like Kapso does (shortened)."""
        state = self.state
        if not state.webhook_url:
            return None
        raw = p.encode(doc)
        headers = p.kapso_headers(raw, state.secrets.get(pnid, state.secret), event, batch=batch)
        status = None
        for delay in (0.0, 0.5, 2.0, 5.0, 10.0):  # Kapso: now, +10 s, +40 s, +90 s (shortened)
            await asyncio.sleep(delay)
            try:
                response = await self.http.post(state.webhook_url, content=raw, headers=headers, timeout=10)
                status = response.status_code
            except httpx.HTTPError as exc:
                log.info("fake provider: webhook to %s failed: %s", state.webhook_url, exc)
                status = None
            if status == 200:
                break
        if status != 200:
            log.warning("fake provider: gave up posting %s to %s (last status %s)", event, state.webhook_url, status)
        state.webhooks.append({"at": time.time(), "event": event, "status": status})
        return status

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient()
        return self._http

    # -- running ---------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on the running event loop; returns the base URL (``port=0`` picks a free one)."""
        config = uvicorn.Config(self.app, host=host, port=port, log_level="warning", lifespan="off", access_log=False)
        server = _QuietServer(config)
        self._server = server
        self._serve_task = asyncio.get_running_loop().create_task(server.serve())
        deadline = time.monotonic() + 10
        while not server.started:
            if self._serve_task.done():
                self._serve_task.result()
                raise RuntimeError("fake provider did not start")
            if time.monotonic() > deadline:
                raise RuntimeError("fake provider did not start within 10 s")
            await asyncio.sleep(0.01)
        bound = server.servers[0].sockets[0].getsockname()
        self.url = f"http://{bound[0]}:{bound[1]}"
        return self.url

    @property
    def api_base_url(self) -> str:
        return self.url + "/meta/whatsapp/v24.0"

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            self._server.should_exit = True
            if self._serve_task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._serve_task, timeout=5)
        if self._http is not None:
            await self._http.aclose()


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers: it runs inside another server's (or test's) loop."""

    @contextlib.contextmanager
    def capture_signals(self):  # noqa: ANN201
        yield
