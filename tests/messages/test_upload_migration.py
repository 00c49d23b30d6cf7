"""Migration 0005 on both backends: uploads already sent (or received) are given the conversation
and contact of the first message that carries them; unsent ones stay unattached; downgrade removes
the columns and upgrading again restores them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import inspect, insert, select

from kabar.db import tables as t
from kabar.db.migrate import downgrade, upgrade
from kabar.db.types import utcnow
from kabar.ids import new_id
from tests.conftest import create_database
from tests.foundation.test_migrations import on_database


def _seed(conn: Any) -> dict[str, str]:
    now = utcnow()
    ids = {name: new_id() for name in ("user", "ws", "contact", "other", "conv", "other_conv", "sent", "twice", "unsent")}
    conn.execute(insert(t.users).values(id=ids["user"], email=f"{ids['user']}@example.test", created_at=now, updated_at=now))
    conn.execute(insert(t.workspaces).values(id=ids["ws"], name="W", slug=ids["ws"], owner_id=ids["user"], created_at=now, updated_at=now))
    for i, (contact, conversation) in enumerate((("contact", "conv"), ("other", "other_conv"))):
        conn.execute(insert(t.contacts).values(id=ids[contact], workspace_id=ids["ws"], phone_e164=f"+62812000000{i}", phone_raw="x", created_at=now, updated_at=now))
        conn.execute(insert(t.conversations).values(id=ids[conversation], workspace_id=ids["ws"], contact_id=ids[contact], last_message_at=now, created_at=now, updated_at=now))
    for name in ("sent", "twice", "unsent"):
        conn.execute(
            insert(t.uploads).values(
                id=ids[name], workspace_id=ids["ws"], filename="a.png", mime_type="image/png", size=1, sha256="0" * 64,
                path=f"uploads/{ids['ws']}/{ids[name]}", created_by=ids["user"], created_at=now,
            )
        )
    # "twice" went to the other conversation first, then to the first one.
    sends = (("sent", "conv", "contact", now), ("twice", "other_conv", "other", now - timedelta(minutes=5)), ("twice", "conv", "contact", now))
    for upload, conversation, contact, at in sends:
        conn.execute(
            insert(t.messages).values(
                id=new_id(), workspace_id=ids["ws"], conversation_id=ids[conversation], contact_id=ids[contact], direction="outbound",
                sender_type="user", type="image", media={"id": ids[upload], "mime_type": "image/png"}, status="sent", created_at=at, updated_at=at,
            )
        )
    conn.commit()
    return ids


def _owners(ids: dict[str, str]) -> Any:
    def read(conn: Any) -> dict[str, tuple[Any, Any]]:
        u = t.uploads
        rows = conn.execute(select(u.c.id, u.c.conversation_id, u.c.contact_id).where(u.c.workspace_id == ids["ws"]))
        return {row.id: (row.conversation_id, row.contact_id) for row in rows}

    return read


def test_existing_uploads_join_the_conversation_they_were_sent_in(backend, tmp_path):
    url = create_database(backend, tmp_path, "visibility_0005", migrate=False)
    upgrade(url, "0004")
    ids = on_database(url, _seed)
    upgrade(url, "0005")
    owners = on_database(url, _owners(ids))
    assert owners == {
        ids["sent"]: (ids["conv"], ids["contact"]),
        ids["twice"]: (ids["other_conv"], ids["other"]),  # the first message that carried it
        ids["unsent"]: (None, None),
    }
    downgrade(url, "0004")
    columns = on_database(url, lambda conn: {c["name"] for c in inspect(conn).get_columns("uploads")})
    assert not {"conversation_id", "contact_id"} & columns
    upgrade(url, "0005")
    assert on_database(url, _owners(ids)) == owners
