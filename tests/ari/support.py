"""ARI test support: a fake OpenAI-compatible server (which also answers WhatsApp sends) on
127.0.0.1, a customer who writes through real signed Kapso webhooks, and ways to look at what
ARI did."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sqlalchemy import select

from kabar.channels.fake import payloads as p
from kabar.db import tables as t
from tests.channels.support import configure, post_kapso, wait_for


@dataclass
class Scripted:
    content: str | None = None  # the reply text (or JSON for an extraction)
    status: int = 200
    delay: float = 0.0


@dataclass
class FakeLLM:
    """Scripted chat completions. Extraction requests (``response_format``) and reply requests
    have their own queues; an empty queue answers ``{}`` / ``default_reply``."""

    extractions: deque[Scripted] = field(default_factory=deque)
    replies: deque[Scripted] = field(default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    default_reply: str = "Baik kak, ada yang bisa saya bantu lagi?"
    delay: float = 0.0  # for every request
    status: int = 200  # for every request
    sends: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def extract(self, **fields: Any) -> None:
        self.extractions.append(Scripted(json.dumps(fields)))

    def reply(self, text: str, **kw: Any) -> None:
        self.replies.append(Scripted(text, **kw))

    def completion(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any], float]:
        with self.lock:
            self.requests.append(body)
            self.headers.append(headers)
            is_extraction = "response_format" in body
            queue = self.extractions if is_extraction else self.replies
            item = queue.popleft() if queue else Scripted("{}" if is_extraction else self.default_reply)
        delay = max(item.delay, self.delay)
        status = item.status if item.status != 200 else self.status
        if status != 200:
            return status, {"error": {"message": "scripted failure"}}, delay
        doc = {
            "id": "chatcmpl-" + secrets.token_hex(4),
            "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": item.content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70},
        }
        return 200, doc, delay

    @property
    def reply_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if "response_format" not in r]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        fake = self.server.fake
        if self.path.endswith("/chat/completions"):
            status, doc, delay = fake.completion(body, dict(self.headers))
            if delay:
                time.sleep(delay)
        else:  # the WhatsApp provider: accept every send
            with fake.lock:
                fake.sends.append(body)
            status, doc = 200, {"messaging_product": "whatsapp", "messages": [{"id": p.new_wamid()}]}
        raw = json.dumps(doc).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeLLM


class FakeServer:
    def __init__(self) -> None:
        self.fake = FakeLLM()
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.fake = self.fake
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


# -- ARI in a workspace ---------------------------------------------------------------------------


async def enable_ari(tenant: Any, **config: Any) -> dict[str, Any]:
    body = {"enabled": True, "reply_delay_ms": 0, **config}
    response = await tenant.client.put(f"{tenant.base}/ari/config", json=body, headers=tenant.owner.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def add_slots(tenant: Any, days: range | list[int] = range(7), start: str = "13:00", end: str = "16:00", **extra: Any) -> list[dict[str, Any]]:
    out = []
    for day in days:
        response = await tenant.client.post(
            f"{tenant.base}/ari/slots", json={"day_of_week": day, "start_time": start, "end_time": end, **extra}, headers=tenant.owner.headers
        )
        assert response.status_code == 201, response.text
        out.append(response.json())
    return out


class Customer:
    """A WhatsApp customer writing to the workspace through signed Kapso webhooks."""

    def __init__(self, tenant: Any, channel: Any, phone: str | None = None, name: str = "Budi"):
        self.tenant = tenant
        self.client = tenant.client
        self.channel = channel
        self.phone = phone or f"+62812{secrets.randbelow(10**8):08d}"
        self.name = name
        self.conversation_id: str | None = None
        self.contact_id: str | None = None

    async def send(self, *texts: str) -> list[str]:
        """Post each text as its own webhook; returns the stored message ids."""
        ids = []
        for text in texts:
            wamid = p.new_wamid()
            doc = p.kapso_received(pnid=self.channel.pnid, phone=self.phone, text=text, wamid=wamid, name=self.name)
            response = await post_kapso(self.client, self.channel, doc)
            assert response.status_code == 200, response.text
            row = await self._one(select(t.messages).where(t.messages.c.workspace_id == self.tenant.ws, t.messages.c.provider_message_id == wamid))
            self.conversation_id, self.contact_id = row.conversation_id, row.contact_id
            ids.append(row.id)
        return ids

    async def say(self, *texts: str) -> list[str]:
        """Send, let ARI run, return the texts of the bot messages it sent in response."""
        before = len(await self.bot_texts())
        await self.send(*texts)
        await settle(self.client, self.tenant.ws)
        return (await self.bot_texts())[before:]

    async def _one(self, stmt: Any) -> Any:
        return await self.client.runtime.db.read(lambda conn: conn.execute(stmt).one())

    async def bot_texts(self) -> list[str]:
        if self.conversation_id is None:
            return []
        m = t.messages
        stmt = (
            select(m.c.text)
            .where(m.c.workspace_id == self.tenant.ws, m.c.conversation_id == self.conversation_id, m.c.sender_type == "bot")
            .order_by(m.c.created_at, m.c.id)
        )
        return list(await self.client.runtime.db.read(lambda conn: conn.execute(stmt).scalars().all()))

    async def ari(self) -> dict[str, Any]:
        response = await self.client.get(f"{self.tenant.base}/conversations/{self.conversation_id}/ari", headers=self.tenant.owner.headers)
        assert response.status_code == 200, response.text
        return response.json()

    async def state_row(self) -> Any:
        s = t.ari_states
        stmt = select(s).where(s.c.workspace_id == self.tenant.ws, s.c.conversation_id == self.conversation_id)
        return await self.client.runtime.db.read(lambda conn: conn.execute(stmt).first())

    async def contact(self) -> Any:
        c = t.contacts
        return await self._one(select(c).where(c.c.workspace_id == self.tenant.ws, c.c.id == self.contact_id))

    async def conversation(self) -> Any:
        c = t.conversations
        return await self._one(select(c).where(c.c.workspace_id == self.tenant.ws, c.c.id == self.conversation_id))


async def settle(client: Any, ws: str, timeout: float = 20.0) -> None:
    """Wait until no ARI reply job of the workspace is queued or running."""
    j = t.jobs
    stmt = select(j.c.id).where(j.c.workspace_id == ws, j.c.kind == "ari.reply", j.c.status.in_(("queued", "running")))

    async def idle() -> bool:
        return not await client.runtime.db.read(lambda conn: conn.execute(stmt).first())

    await wait_for(idle, timeout=timeout)


async def rows_of(client: Any, table: Any, ws: str, *where: Any, order: Any = None) -> list[Any]:
    stmt = select(table).where(table.c.workspace_id == ws, *where)
    if order is not None:
        stmt = stmt.order_by(order)
    return await client.runtime.db.read(lambda conn: conn.execute(stmt).all())


async def kapso_channel(tenant: Any, server: FakeServer) -> Any:
    """A Kapso channel whose sends go to the fake server (nothing leaves 127.0.0.1)."""
    return await configure(tenant, "kapso", api_base_url=server.url)
