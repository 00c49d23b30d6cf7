"""Migration 0006 on both backends: rows where contact and conversation disagree are repaired (the
conversation's assignee wins), and from then on the database keeps the conversation's copy equal
to the contact's, whoever writes, with the inbox count buckets right; downgrade removes that."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, literal_column, select, update

from kabar.db import tables as t
from kabar.db.migrate import downgrade, upgrade
from kabar.db.types import utcnow
from kabar.ids import new_id
from tests.conftest import create_database
from tests.foundation.test_migrations import on_database

k, c = t.contacts, t.conversations


def _seed(conn: Any) -> dict[str, str]:
    now = utcnow()
    ids = {name: new_id() for name in ("ana", "bob", "ws", "split", "lonely", "loose", "split_conv", "loose_conv")}
    for user in ("ana", "bob"):
        conn.execute(insert(t.users).values(id=ids[user], email=f"{ids[user]}@example.test", created_at=now, updated_at=now))
    conn.execute(insert(t.workspaces).values(id=ids["ws"], name="W", slug=ids["ws"], owner_id=ids["ana"], created_at=now, updated_at=now))
    for user in ("ana", "bob"):
        conn.execute(insert(t.members).values(workspace_id=ids["ws"], user_id=ids[user], role="member", created_at=now))
    contacts = {"split": ids["ana"], "lonely": ids["ana"], "loose": None}  # contact's assignee
    for i, (name, assignee) in enumerate(contacts.items()):
        conn.execute(insert(k).values(id=ids[name], workspace_id=ids["ws"], phone_e164=f"+6281200000{i}", phone_raw="x", assignee_id=assignee, created_at=now, updated_at=now))
    for name in ("split", "loose"):  # both chats are Bob's in the inbox
        conn.execute(insert(c).values(id=ids[f"{name}_conv"], workspace_id=ids["ws"], contact_id=ids[name], assignee_id=ids["bob"], last_message_at=now, created_at=now, updated_at=now))
    conn.commit()
    return ids


def _assignees(conn: Any, ids: dict[str, str]) -> dict[str, Any]:
    rows = {r.id: r.assignee_id for r in conn.execute(select(k.c.id, k.c.assignee_id).where(k.c.workspace_id == ids["ws"]))}
    rows |= {r.id: r.assignee_id for r in conn.execute(select(c.c.id, c.c.assignee_id).where(c.c.workspace_id == ids["ws"]))}
    return rows


def _counts_match(conn: Any, ws: str) -> bool:
    buckets = dict(
        conn.execute(
            select(t.conversation_counts.c.assignee_key, func.sum(t.conversation_counts.c.n))
            .where(t.conversation_counts.c.workspace_id == ws)
            .group_by(t.conversation_counts.c.assignee_key)
        ).all()
    )
    key = func.coalesce(c.c.assignee_id, literal_column("''"))
    real = dict(conn.execute(select(key, func.count()).where(c.c.workspace_id == ws).group_by(key)).all())
    return {key: n for key, n in buckets.items() if n} == real


def test_repair_then_one_source_of_truth(backend, tmp_path):
    url = create_database(backend, tmp_path, "assignment_0006", migrate=False)
    upgrade(url, "0005")
    ids = on_database(url, _seed)
    upgrade(url)

    def after_upgrade(conn: Any) -> None:
        got = _assignees(conn, ids)
        # The conversation's assignee won; a contact without a conversation kept its own.
        assert (got[ids["split"]], got[ids["split_conv"]]) == (ids["bob"], ids["bob"])
        assert (got[ids["loose"]], got[ids["loose_conv"]]) == (ids["bob"], ids["bob"])
        assert got[ids["lonely"]] == ids["ana"]
        # Any writer now: the contact's change reaches its conversation; a direct write of the
        # conversation's copy is put back; a new conversation takes its contact's owner.
        conn.execute(update(k).where(k.c.id == ids["split"]).values(assignee_id=None))
        conn.execute(update(c).where(c.c.id == ids["loose_conv"]).values(assignee_id=None))
        now = utcnow()
        lonely_conv = new_id()
        conn.execute(insert(c).values(id=lonely_conv, workspace_id=ids["ws"], contact_id=ids["lonely"], last_message_at=now, created_at=now, updated_at=now))
        conn.commit()
        got = _assignees(conn, ids)
        assert got[ids["split_conv"]] is None and got[ids["loose_conv"]] == ids["bob"] and got[lonely_conv] == ids["ana"]
        assert _counts_match(conn, ids["ws"])

    on_database(url, after_upgrade)
    downgrade(url, "0005")

    def after_downgrade(conn: Any) -> None:
        conn.execute(update(c).where(c.c.id == ids["loose_conv"]).values(assignee_id=None))
        conn.commit()
        assert _assignees(conn, ids)[ids["loose_conv"]] is None  # no trigger any more
        assert _counts_match(conn, ids["ws"])

    on_database(url, after_downgrade)
    upgrade(url)
