"""Setup for contact tests: API shortcuts, and conversations/messages written straight into the
tables (webhook ingest is another module)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select

from kabar.db import tables as t
from kabar.db.types import utcnow
from kabar.ids import new_id


async def create_contact(tenant: Any, caller: Any = None, **fields: Any) -> dict[str, Any]:
    response = await tenant.client.post(f"{tenant.base}/contacts", json=fields, headers=(caller or tenant.owner).headers)
    assert response.status_code == 201, response.text
    return response.json()


async def add_conversation(
    client: Any,
    ws: str,
    contact_id: str,
    texts: list[str],
    *,
    start: datetime | None = None,
    unread: int = 0,
    step: timedelta = timedelta(minutes=1),
) -> dict[str, Any]:
    """A conversation with ``texts`` alternating inbound/outbound, ``step`` apart, oldest first."""
    start = start or utcnow() - timedelta(hours=1)
    conversation_id = new_id()
    times = [start + step * i for i in range(len(texts))]
    last = times[-1] if times else start
    rows = [
        {
            "id": new_id(),
            "workspace_id": ws,
            "conversation_id": conversation_id,
            "contact_id": contact_id,
            "direction": "inbound" if i % 2 == 0 else "outbound",
            "sender_type": "contact" if i % 2 == 0 else "user",
            "type": "text",
            "text": text,
            "status": "received" if i % 2 == 0 else "read",
            "provider_message_id": f"wamid.{new_id()}",
            "reactions": [],
            "metadata": {},
            "created_at": at,
            "updated_at": at,
        }
        for i, (text, at) in enumerate(zip(texts, times, strict=True))
    ]
    conversation = {
        "id": conversation_id,
        "workspace_id": ws,
        "contact_id": contact_id,
        "status": "open",
        "unread_count": unread,
        "last_message_at": last,
        "last_message_preview": texts[-1] if texts else "",
        "last_inbound_at": max((r["created_at"] for r in rows if r["direction"] == "inbound"), default=None),
        "ai_paused": False,
        "created_at": start,
        "updated_at": last,
    }

    def write(uow: Any) -> None:
        uow.conn.execute(insert(t.conversations).values(**conversation))
        if rows:
            uow.conn.execute(insert(t.messages), rows)

    await client.runtime.db.transaction(write)
    return {**conversation, "message_ids": [r["id"] for r in rows]}


async def rows(client: Any, table: Any, *where: Any) -> list[Any]:
    return await client.runtime.db.read(lambda conn: conn.execute(select(table).where(*where)).all())


async def events_of(client: Any, ws: str, *types: str) -> list[Any]:
    found = await rows(client, t.events, t.events.c.workspace_id == ws)
    return [e for e in sorted(found, key=lambda e: e.seq) if not types or e.type in types]
