"""A realistic dataset for the benchmark: workspaces, contacts, one conversation each, messages
and notes, bulk-inserted in batches (with a progress bar) through the same schema as production.

The credentials it returns (an API key and a user session per workspace) are created through the
real services, so the benchmark authenticates exactly as clients do.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import insert

from kabar.auth.service import create_user, login
from kabar.contacts.service import search_text_for
from kabar.db import tables as t
from kabar.db.types import utcnow
from kabar.demo import FIRST, INBOUND, LAST, OUTBOUND, TAGS
from kabar.ids import new_id
from kabar.workspaces import schemas as ws_schemas
from kabar.workspaces.service import create_api_key, create_workspace

BATCH = 2000
STATUSES = ["prospect", "prospect", "hot_lead", "cold_lead", "client", "student", "alumni", "lost"]


@dataclass
class BenchWorkspace:
    id: str
    api_key: str
    session_token: str
    phones: list[str] = field(default_factory=list)
    conversation_ids: list[str] = field(default_factory=list)
    webhook_secret: str = ""
    phone_number_id: str = ""


def phone_for(workspace_index: int, i: int) -> str:
    return f"+62{811 + workspace_index}{i:08d}"


async def seed(
    runtime: Any,
    *,
    workspaces: int = 3,
    contacts: int = 100_000,
    messages_per_conversation: int = 10,
    progress: Callable[[str, int], None] | None = None,
) -> list[BenchWorkspace]:
    """Create the dataset; returns per-workspace credentials and sample ids for the workloads."""
    db = runtime.db
    rng = random.Random(42)
    now = utcnow()
    result: list[BenchWorkspace] = []
    per_ws = max(1, contacts // workspaces)
    for w in range(workspaces):
        email = f"bench-{new_id().lower()}@bench.kabar.id"  # ids are time-ordered: a prefix repeats
        password = "bench-password-123"

        def _setup(uow: Any, w: int = w, email: str = email) -> BenchWorkspace:
            user_id = create_user(uow, email=email, password=password, name=f"Bench {w}")
            ws = create_workspace(uow, owner_id=user_id, name=f"Bench workspace {w}")
            key = create_api_key(uow, _owner_scope(ws.id, user_id), ws_schemas.ApiKeyCreate(name="bench"))
            session = login(uow, runtime.settings, email=email, password=password, user_agent="kabar-bench")
            return BenchWorkspace(id=ws.id, api_key=key.secret or "", session_token=session["token"])

        bw = await db.transaction(_setup)
        result.append(bw)
        for start in range(0, per_ws, BATCH):
            count = min(BATCH, per_ws - start)
            rows = _batch(rng, bw, w, start, count, messages_per_conversation, now)
            await db.transaction(_insert_batch, rows)
            if progress:
                progress("rows", count)
    if not db.is_sqlite:
        # What autovacuum does shortly after a bulk load, done now rather than in the middle of a
        # measurement: planner statistics (without them PostgreSQL takes the freshly filled
        # tables for tiny ones and picks poor indexes) and the visibility map.
        async with db.async_engine.connect() as conn:
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.exec_driver_sql("VACUUM ANALYZE")
    return result


def _owner_scope(workspace_id: str, user_id: str) -> Any:
    from kabar.auth.permissions import Role
    from kabar.auth.scope import Principal, Scope

    return Scope(workspace_id, Role.OWNER, Principal("session", user_id=user_id))


def _batch(rng: random.Random, bw: BenchWorkspace, w: int, start: int, count: int, per_conv: int, now: Any) -> dict[str, list[dict[str, Any]]]:
    contacts, conversations, messages, notes = [], [], [], []
    for i in range(start, start + count):
        contact_id, conversation_id = new_id(), new_id()
        phone = phone_for(w, i)
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        email = f"{name.lower().replace(' ', '.')}.{i}@contoh.id" if rng.random() < 0.4 else None
        first = now - timedelta(days=rng.randint(1, 365), seconds=rng.randint(0, 86400))
        last = now - timedelta(seconds=rng.randint(0, 86400 * 30))
        if last < first:
            last = first
        contacts.append(
            {
                "id": contact_id, "workspace_id": bw.id, "phone_e164": phone, "phone_raw": phone[1:], "name": name,
                "profile_name": name.split()[0], "email": email, "tags": sorted(set(rng.sample(TAGS, rng.randint(0, 2)))),
                "attributes": {}, "lead_status": rng.choice(STATUSES), "lead_score": rng.randint(0, 100),
                "assignee_id": None, "source": "whatsapp", "first_contact_at": first, "last_interaction_at": last,
                "search_text": search_text_for(name=name, profile_name=name.split()[0], email=email, phone_e164=phone), "created_at": first, "updated_at": last,
            }
        )
        # Half the conversations had a customer message in the last 24 h (so sends are allowed).
        last_inbound = now - timedelta(minutes=rng.randint(1, 600)) if i % 2 == 0 else last
        conversations.append(
            {
                "id": conversation_id, "workspace_id": bw.id, "contact_id": contact_id,
                "lead_status": contacts[-1]["lead_status"],  # the copy the triggers would otherwise make
                "status": rng.choice(["open", "open", "pending", "closed"]), "assignee_id": None,
                "unread_count": rng.choice([0, 0, 0, 1, 2]), "last_message_at": max(last, last_inbound),
                "last_message_preview": rng.choice(INBOUND)[:200], "last_inbound_at": last_inbound, "ai_paused": False,
                "created_at": first, "updated_at": last,
            }
        )
        if len(bw.phones) < 5000:
            bw.phones.append(phone)
        if i % 2 == 0 and len(bw.conversation_ids) < 5000:
            bw.conversation_ids.append(conversation_id)
        at = first
        step = max(1, int((last - first).total_seconds() / max(1, per_conv)))
        for m in range(per_conv):
            inbound = m % 2 == 0
            at = at + timedelta(seconds=step)
            messages.append(
                {
                    "id": new_id(), "workspace_id": bw.id, "conversation_id": conversation_id, "contact_id": contact_id,
                    "direction": "inbound" if inbound else "outbound", "sender_type": "contact" if inbound else "user",
                    "sender_id": None, "type": "text", "text": rng.choice(INBOUND if inbound else OUTBOUND),
                    "status": "received" if inbound else "read", "provider_message_id": f"wamid.B{w}.{i}.{m}",
                    "reactions": [], "metadata": {}, "created_at": at, "updated_at": at,
                }
            )
        if i % 5 == 0:
            notes.append(
                {
                    "id": new_id(), "workspace_id": bw.id, "contact_id": contact_id, "author_id": None,
                    "author_type": "system", "note_type": "note", "content": "Tertarik program S2 di Australia",
                    "metadata": {}, "created_at": first, "updated_at": first,
                }
            )
    return {"contacts": contacts, "conversations": conversations, "messages": messages, "notes": notes}


def _insert_batch(uow: Any, rows: dict[str, list[dict[str, Any]]]) -> None:
    uow.conn.execute(insert(t.contacts), rows["contacts"])
    uow.conn.execute(insert(t.conversations), rows["conversations"])
    uow.conn.execute(insert(t.messages), rows["messages"])
    if rows["notes"]:
        uow.conn.execute(insert(t.contact_notes), rows["notes"])
