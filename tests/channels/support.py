"""Helpers shared by the channel and ingest tests: configure a channel, post signed webhooks,
look at what was stored, wait for a condition."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from kabar.channels.fake import payloads as p
from kabar.db import tables as t


@dataclass
class Channel:
    provider: str
    pnid: str
    webhook_secret: str
    app_secret: str
    verify_token: str
    api_key: str


# Tests never call real providers: a channel without a fake points at a closed local port.
NOWHERE = "http://127.0.0.1:9/meta/whatsapp/v24.0"


async def configure(tenant: Any, provider: str = "kapso", *, api_base_url: str = NOWHERE, pnid: str | None = None,
                    fake: Any = None) -> Channel:
    channel = Channel(
        provider=provider,
        pnid=pnid or f"pn{secrets.token_hex(6)}",
        webhook_secret="whsec-" + secrets.token_hex(8),
        app_secret="app-" + secrets.token_hex(8),
        verify_token="vt-" + secrets.token_hex(8),
        api_key="key-" + secrets.token_hex(8),
    )
    body: dict[str, Any] = {
        "provider": provider,
        "phone_number_id": channel.pnid,
        "display_phone_number": "+62 21 5088 0000",
        "api_key": channel.api_key,
        "webhook_secret": channel.webhook_secret,
        "app_secret": channel.app_secret,
        "verify_token": channel.verify_token,
    }
    body["api_base_url"] = fake.api_base_url if fake is not None else api_base_url
    response = await tenant.client.put(f"{tenant.base}/channel", json=body, headers=tenant.owner.headers)
    assert response.status_code == 200, response.text
    if fake is not None:
        fake.state.secret, fake.state.api_key = channel.webhook_secret, channel.api_key
    return channel


async def post_kapso(client: Any, channel: Channel, doc: dict[str, Any], event: str = "whatsapp.message.received", *,
                     key: str | None = None, batch: int | None = None, secret: str | None = None) -> Any:
    raw = p.encode(doc)
    headers = p.kapso_headers(raw, secret or channel.webhook_secret, event, key=key, batch=batch)
    return await client.post("/webhooks/kapso", content=raw, headers=headers)


async def post_meta(client: Any, channel: Channel, doc: dict[str, Any], *, path: str = "/webhooks/meta", secret: str | None = None) -> Any:
    raw = p.encode(doc)
    return await client.post(path, content=raw, headers=p.meta_headers(raw, secret or channel.app_secret))


async def rows(client: Any, table: Any, ws: str, *where: Any) -> list[Any]:
    stmt = select(table).where(table.c.workspace_id == ws, *where)
    if "seq" in table.c:  # the event log: in log order (PostgreSQL returns rows in no set order)
        stmt = stmt.order_by(table.c.seq)
    return await client.runtime.db.read(lambda conn: conn.execute(stmt).all())


async def count(client: Any, table: Any, ws: str, *where: Any) -> int:
    stmt = select(func.count()).select_from(table).where(table.c.workspace_id == ws, *where)
    return await client.runtime.db.read(lambda conn: conn.execute(stmt).scalar_one())


async def message(client: Any, ws: str, provider_message_id: str) -> Any:
    found = await rows(client, t.messages, ws, t.messages.c.provider_message_id == provider_message_id)
    return found[0] if found else None


async def wait_for(condition: Callable[[], Awaitable[Any]], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with its last value at the deadline."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = await condition()
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")
