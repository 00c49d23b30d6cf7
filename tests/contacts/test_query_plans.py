"""The hot paths use their indexes at a realistic size: by-phone context (contact, notes,
messages) and contact search, on 20,000 contacts with conversations, messages and notes.

``EXPLAIN QUERY PLAN`` on SQLite, ``EXPLAIN`` on PostgreSQL, both after ``ANALYZE``, run on the very
statements the repository executes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select, text

from kabar.auth.permissions import Role
from kabar.auth.scope import Principal, Scope
from kabar.contacts import repository as repo
from kabar.contacts.service import search_text_for
from kabar.db import tables as t
from kabar.db.types import utcnow
from kabar.ids import new_id
from tests.helpers import make_tenant

SQLITE_NAMES = {
    "uq_contacts_workspace_id_phone_e164": "contacts USING INDEX sqlite_autoindex_contacts_2 (workspace_id=? AND phone_e164=?)",
    "uq_conversations_workspace_id_contact_id": "conversations USING INDEX sqlite_autoindex_conversations_2 (workspace_id=? AND contact_id=?)",
}
CONTACTS = 20_000
MESSAGES_PER_CONVERSATION = 5
NOTES_EVERY = 2  # a note on every second contact


def _phone(i: int) -> str:
    return f"+62817{i:08d}"


@pytest.fixture(scope="module")
async def big_workspace(client) -> dict[str, Any]:
    tenant = await make_tenant(client)
    ws = tenant.ws
    now = utcnow()
    contacts, conversations, messages, notes = [], [], [], []
    for i in range(CONTACTS):
        at = now - timedelta(minutes=CONTACTS - i)
        contact_id, conversation_id = new_id(), new_id()
        name = f"Orang Nomor {i}"
        contacts.append(
            {
                "id": contact_id, "workspace_id": ws, "phone_e164": _phone(i), "phone_raw": _phone(i), "name": name,
                "tags": [], "attributes": {}, "search_text": search_text_for(name=name, profile_name=None, email=None, phone_e164=_phone(i)),
                "created_at": at, "updated_at": at,
            }
        )
        conversations.append(
            {
                "id": conversation_id, "workspace_id": ws, "contact_id": contact_id, "last_message_at": at,
                "created_at": at, "updated_at": at,
            }
        )
        for m in range(MESSAGES_PER_CONVERSATION):
            messages.append(
                {
                    "id": new_id(), "workspace_id": ws, "conversation_id": conversation_id, "contact_id": contact_id,
                    "direction": "inbound", "sender_type": "contact", "type": "text", "text": f"pesan {m}",
                    "status": "received", "created_at": at + timedelta(seconds=m), "updated_at": at,
                }
            )
        if i % NOTES_EVERY == 0:
            notes.append(
                {"id": new_id(), "workspace_id": ws, "contact_id": contact_id, "content": "catatan", "created_at": at, "updated_at": at}
            )

    def write(uow: Any) -> None:
        for table, batch in ((t.contacts, contacts), (t.conversations, conversations), (t.messages, messages), (t.contact_notes, notes)):
            for start in range(0, len(batch), 5000):
                uow.conn.execute(insert(table), batch[start : start + 5000])

    db = client.runtime.db
    await db.transaction(write)
    # Statistics as a live database may have them (on SQLite only if an operator ran ANALYZE: the
    # plans must not depend on it).
    if db.is_sqlite:
        await db.transaction(lambda uow: uow.conn.execute(text("ANALYZE")))
    else:
        async with db.async_engine.connect() as conn:
            await conn.execute(text("ANALYZE contacts, conversations, messages, contact_notes"))
            await conn.commit()
    return {"ws": ws, "owner": tenant.owner.user_id, "contact_id": contacts[12_345]["id"], "phone": _phone(12_345)}


async def _plan(client, statement, *, only_index: str | None = None) -> str:
    """The plan of ``statement`` (bound values inlined) as text. ``only_index`` (PostgreSQL): the
    plan when that index is the only way in besides the primary key: the other indexes of its
    table are dropped and sequential scans are off, in a transaction that is rolled back."""
    db = client.runtime.db

    def explain(conn) -> str:
        sql = str(statement.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
        if conn.dialect.name == "sqlite":
            return "\n".join(row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
        if only_index:
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            others = conn.exec_driver_sql(
                "SELECT i.indrelid::regclass::text, i.indexrelid::regclass::text, c.conname FROM pg_index i"
                " LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid"
                f" WHERE i.indrelid = (SELECT indrelid FROM pg_index WHERE indexrelid = '{only_index}'::regclass)"
                f" AND NOT i.indisprimary AND i.indexrelid <> '{only_index}'::regclass"
            ).all()
            for table, index, constraint in others:
                conn.exec_driver_sql(f"ALTER TABLE {table} DROP CONSTRAINT {constraint}" if constraint else f"DROP INDEX {index}")
        return "\n".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + sql))

    return await db.read(explain)


def _assert_indexed(plan: str, *indexes: str) -> None:
    for index in indexes:
        # SQLite names the index behind a UNIQUE constraint itself (sqlite_autoindex_…).
        index = SQLITE_NAMES.get(index, index) if "SEARCH" in plan or "SCAN" in plan else index
        assert index in plan, f"{index} not used:\n{plan}"
    assert "Seq Scan" not in plan, plan  # PostgreSQL
    for line in plan.splitlines():  # SQLite: a SCAN of a table (not the FTS index) reads all of it
        assert not (line.strip().startswith("SCAN ") and "VIRTUAL TABLE" not in line), plan


async def test_by_phone_statements_use_indexes(client, big_workspace):
    ws, contact_id = big_workspace["ws"], big_workspace["contact_id"]
    contact = repo.CONTEXT_CONTACT.params(ws=ws, phone=big_workspace["phone"])
    _assert_indexed(await _plan(client, contact), "uq_contacts_workspace_id_phone_e164")
    member = repo.CONTEXT_CONTACT_MEMBER.params(ws=ws, phone=big_workspace["phone"], user_id=big_workspace["owner"])
    _assert_indexed(await _plan(client, member), "uq_contacts_workspace_id_phone_e164")
    notes_plan = await _plan(client, repo.CONTEXT_NOTES.params(ws=ws, contact_id=contact_id))
    _assert_indexed(notes_plan, "ix_contact_notes_ws_contact")
    assert "TEMP B-TREE" not in notes_plan and "Sort" not in notes_plan, notes_plan
    messages_plan = await _plan(client, repo.CONTEXT_MESSAGES.params(ws=ws, contact_id=contact_id))
    _assert_indexed(messages_plan, "uq_conversations_workspace_id_contact_id", "ix_messages_ws_conv_created")
    # The 10 newest come straight off the index, without sorting the conversation's messages.
    assert "TEMP B-TREE" not in messages_plan and "Sort" not in messages_plan, messages_plan


# Selective searches, as people type them: digits from the middle of a number, a name, a local
# number prefix, an international one.
@pytest.mark.parametrize("q", ["2345", "nomor 1234", "08170001234", "+62 817 0001 99"])
async def test_search_uses_the_trigram_index(client, big_workspace, q):
    db = client.runtime.db
    stmt, plan = await _search_plan(client, big_workspace, q)
    if db.is_sqlite:
        # The FTS matches drive: looked up by rowid, not found by walking the workspace.
        _assert_indexed(plan, "contacts_fts", "USING INTEGER PRIMARY KEY (rowid=?)")
        assert "ix_contacts_ws_created" not in plan, plan
    else:
        # The search predicate is one the trigram index serves. Whether the planner prefers it to
        # walking the workspace depends on the workspace's size (here it is most of a 20k-row
        # table, and walking it can cost less), so that choice is taken out of the question.
        _assert_indexed(await _plan(client, stmt, only_index="ix_contacts_search_global"), "ix_contacts_search_global")
    await _assert_same_as_scan(client, big_workspace, q, stmt)


# A term in every contact: walking the newest-first index fills the page at once.
async def test_common_term_walks_the_newest_first_index(client, big_workspace):
    stmt, plan = await _search_plan(client, big_workspace, "orang")
    _assert_indexed(plan, *(["ix_contacts_ws_created", "contacts_fts"] if client.runtime.db.is_sqlite else []))
    await _assert_same_as_scan(client, big_workspace, "orang", stmt)


def _owner_scope(big_workspace) -> Scope:
    return Scope(big_workspace["ws"], Role.OWNER, Principal("session", user_id=big_workspace["owner"]))


async def _search_plan(client, big_workspace, q):
    ctx = _owner_scope(big_workspace)
    stmt = await client.runtime.db.read(lambda conn: repo.newest_first(repo.filtered(conn, ctx, repo.ContactFilters(q=q)), None, 51))
    return stmt, await _plan(client, stmt)


async def _assert_same_as_scan(client, big_workspace, q, stmt) -> None:
    """The indexed search returns what a plain scan with LIKE returns."""
    terms = repo.search_terms(q)
    scan = repo.newest_first(
        select(t.contacts).where(
            t.contacts.c.workspace_id == big_workspace["ws"],
            *(t.contacts.c.search_text.contains(term, autoescape=True) for term in terms),
        ),
        None,
        51,
    )
    found = await client.runtime.db.read(lambda conn: [r.id for r in conn.execute(stmt)])
    expected = await client.runtime.db.read(lambda conn: [r.id for r in conn.execute(scan)])
    assert found and found == expected


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)  # SQLite runs the three statements of the test above
async def test_by_phone_in_one_statement_uses_the_same_indexes_on_postgres(client, big_workspace):
    """PostgreSQL runs the three lookups as one statement (one round trip): each part still
    comes off its index, with nothing sorted."""
    ws, phone = big_workspace["ws"], big_workspace["phone"]
    for statement, extra in ((repo.CONTEXT_ONE_TRIP, {}), (repo.CONTEXT_ONE_TRIP_MEMBER, {"user_id": big_workspace["owner"]})):
        plan = await _plan(client, statement.params(ws=ws, phone=phone, **extra))
        _assert_indexed(
            plan,
            "uq_contacts_workspace_id_phone_e164",
            "ix_contact_notes_ws_contact",
            "uq_conversations_workspace_id_contact_id",
            "ix_messages_ws_conv_created",
        )
        assert "Sort" not in plan, plan
