"""Test data written straight into the tables (the contacts API and webhook ingest are other
modules): contacts, their conversation and messages, in the shapes ingest produces."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, insert, update

from kabar.contacts.service import search_text_for
from kabar.db import tables as t
from kabar.db.types import utcnow
from kabar.ids import new_id

_phones = itertools.count(10_000_000)


@dataclass
class Seeded:
    contact_id: str
    conversation_id: str
    phone: str
    message_ids: list[str]


def contact_row(ws: str, *, phone: str | None = None, name: str | None = None, tags: list[str] | None = None,
                lead_status: str = "prospect", assignee_id: str | None = None, created_at: datetime | None = None,
                score: int = 0) -> dict[str, Any]:
    phone = phone or f"+62813{next(_phones):08d}"
    created_at = created_at or utcnow()
    profile_name = name.split()[0] if name else None
    search = search_text_for(name=name, profile_name=profile_name, email=None, phone_e164=phone)
    return {
        "id": new_id(), "workspace_id": ws, "phone_e164": phone, "phone_raw": phone, "name": name,
        "profile_name": profile_name, "email": None, "tags": tags or [], "attributes": {},
        "lead_status": lead_status, "lead_score": score, "assignee_id": assignee_id, "source": "whatsapp",
        "first_contact_at": created_at, "last_interaction_at": created_at, "search_text": search,
        "created_at": created_at, "updated_at": created_at,
    }


def conversation_row(ws: str, contact: dict[str, Any], *, status: str = "open", assignee_id: str | None = None,
                     unread: int = 0, last_message_at: datetime, last_inbound_at: datetime | None,
                     preview: str = "Halo kak") -> dict[str, Any]:
    return {
        "id": new_id(), "workspace_id": ws, "contact_id": contact["id"], "status": status, "assignee_id": assignee_id,
        "unread_count": unread, "last_message_at": last_message_at, "last_message_preview": preview,
        "last_inbound_at": last_inbound_at, "ai_paused": False, "created_at": last_message_at, "updated_at": last_message_at,
    }


def message_row(ws: str, conversation: dict[str, Any], *, at: datetime, direction: str = "inbound",
                text: str = "Halo kak") -> dict[str, Any]:
    inbound = direction == "inbound"
    return {
        "id": new_id(), "workspace_id": ws, "conversation_id": conversation["id"], "contact_id": conversation["contact_id"],
        "direction": direction, "sender_type": "contact" if inbound else "user", "sender_id": None, "type": "text",
        "text": text, "status": "received" if inbound else "read", "provider_message_id": f"wamid.{new_id()}",
        "reactions": [], "metadata": {}, "created_at": at, "updated_at": at,
    }


async def seed_conversation(client: Any, ws: str, *, name: str | None = "Budi Santoso", phone: str | None = None,
                            tags: list[str] | None = None, lead_status: str = "prospect", status: str = "open",
                            assignee_id: str | None = None, unread: int = 0, last_message_at: datetime | None = None,
                            inbound_age: timedelta | None = timedelta(hours=1), messages: int = 1) -> Seeded:
    """A contact with one conversation and ``messages`` messages, the newest at ``last_message_at``
    (inbound, so the 24-hour window is open for ``inbound_age`` when that is the newest)."""
    now = utcnow()
    last = last_message_at or now - timedelta(minutes=1)
    last_inbound = None if inbound_age is None else min(last, now - inbound_age)
    contact = contact_row(ws, phone=phone, name=name, tags=tags, lead_status=lead_status, assignee_id=assignee_id)
    conversation = conversation_row(ws, contact, status=status, assignee_id=assignee_id, unread=unread,
                                    last_message_at=last, last_inbound_at=last_inbound)
    rows = [message_row(ws, conversation, at=last - timedelta(seconds=i), direction="inbound" if i % 2 == 0 else "outbound",
                        text=f"pesan {messages - i}") for i in range(messages)]

    def write(uow):  # noqa: ANN001, ANN202
        uow.conn.execute(insert(t.contacts).values(**contact))
        uow.conn.execute(insert(t.conversations).values(**conversation))
        if rows:
            uow.conn.execute(insert(t.messages), rows)

    await client.runtime.db.transaction(write)
    return Seeded(contact["id"], conversation["id"], contact["phone_e164"], [r["id"] for r in reversed(rows)])


async def receive_inbound(client: Any, ws: str, conversation_id: str, contact_id: str, text: str = "Halo lagi",
                          at: datetime | None = None) -> str:
    """What ingest does for a customer message: store it with the provider's timestamp ``at``
    (default now), bump the conversation (unread, times; last_message_at never backwards)."""
    def write(uow):  # noqa: ANN001, ANN202
        when = at or uow.now
        row = message_row(ws, {"id": conversation_id, "contact_id": contact_id}, at=when, text=text)
        uow.conn.execute(insert(t.messages).values(**row))
        c = t.conversations.c
        uow.conn.execute(
            update(t.conversations)
            .where(c.workspace_id == ws, c.id == conversation_id)
            .values(last_message_at=case((c.last_message_at < when, when), else_=c.last_message_at),
                    last_inbound_at=when, last_message_preview=text, unread_count=c.unread_count + 1, updated_at=uow.now)
        )
        return row["id"]

    return await client.runtime.db.transaction(write)


async def set_conversation(client: Any, ws: str, conversation_id: str, **values: Any) -> None:
    def write(uow):  # noqa: ANN001, ANN202
        uow.conn.execute(
            update(t.conversations).where(t.conversations.c.workspace_id == ws, t.conversations.c.id == conversation_id).values(**values)
        )

    await client.runtime.db.transaction(write)
