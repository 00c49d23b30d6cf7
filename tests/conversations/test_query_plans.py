"""The inbox's queries use their indexes at a realistic size (20k conversations in a workspace):
the statements the API actually runs are captured and explained (EXPLAIN QUERY PLAN on SQLite,
EXPLAIN on PostgreSQL, both after ANALYZE)."""

from __future__ import annotations

import random
from datetime import timedelta

from sqlalchemy import event, insert, text

from kabar.db import tables as t
from kabar.db.prepared import Reader
from kabar.db.types import utcnow
from tests.conversations.seed import contact_row, conversation_row, message_row

N = 20_000


async def _bulk_seed(client, ws, assignees):
    rng = random.Random(7)
    now = utcnow()
    contacts, conversations, messages = [], [], []
    for i in range(N):
        at = now - timedelta(minutes=rng.randint(1, 60 * 24 * 90))
        assignee = rng.choice([None, None, *assignees])
        contact = contact_row(ws, phone=f"+62857{i:08d}", name=f"Kontak {i}", tags=rng.sample(["vip", "uk", "s2", "beasiswa"], rng.randint(0, 2)),
                              lead_status=rng.choice(["prospect", "prospect", "hot_lead", "client", "lost"]), assignee_id=assignee)
        conv = conversation_row(ws, contact, status=rng.choice(["open"] * 14 + ["pending"] * 3 + ["closed"] * 3), assignee_id=assignee,
                                unread=rng.choice([0] * 19 + [2]), last_message_at=at, last_inbound_at=at)
        contacts.append(contact)
        conversations.append(conv)
        messages.append(message_row(ws, conv, at=at))

    def write(uow):  # noqa: ANN001, ANN202
        uow.conn.execute(insert(t.contacts), contacts)
        uow.conn.execute(insert(t.conversations), conversations)
        uow.conn.execute(insert(t.messages), messages)

    db = client.runtime.db
    await db.transaction(write)
    # Statistics as a live database has them. PostgreSQL: VACUUM as autovacuum would, which also
    # empties the GIN pending list a bulk insert leaves (the planner avoids the search index until then).
    if db.is_sqlite:
        await db.transaction(lambda uow: uow.conn.execute(text("ANALYZE")))
    else:
        async with db.async_engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE contacts, conversations, messages, conversation_counts"))
    return conversations


class Capture:
    """Statements (with their parameters) the app sends to the database while active: through
    SQLAlchemy, and prepared ones run on the driver (``kabar.db.prepared.Reader``)."""

    def __init__(self, db):
        self.engine = db.sync_engine or db.async_engine.sync_engine
        self.statements: list[tuple[str, object]] = []

    def _on(self, conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        self.statements.append((statement, parameters))

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._on)
        self._reader_init = Reader.__init__
        capture, init = self, Reader.__init__

        def recording(reader, dialect, fetch):  # noqa: ANN001, ANN202
            def fetch_and_record(sql, values):  # noqa: ANN001, ANN202
                capture.statements.append((sql, tuple(values)))
                return fetch(sql, values)

            init(reader, dialect, fetch_and_record)

        Reader.__init__ = recording
        return self

    def __exit__(self, *exc):
        Reader.__init__ = self._reader_init
        event.remove(self.engine, "before_cursor_execute", self._on)


async def _plans(client, url, headers, table):
    """(statement, plan text) of each query on ``table`` that serving ``url`` ran."""
    db = client.runtime.db
    with Capture(db) as cap:
        response = await client.get(url, headers=headers)
    assert response.status_code == 200, response.text
    queries = [(sql, params) for sql, params in cap.statements if f"FROM {table}" in sql]
    assert queries, cap.statements
    prefix = "EXPLAIN QUERY PLAN " if db.is_sqlite else "EXPLAIN "

    def explain(conn):  # noqa: ANN001, ANN202
        out = []
        for sql, params in queries:
            rows = conn.exec_driver_sql(prefix + sql, params).all()
            out.append((sql, "\n".join(str(row[-1]) for row in rows)))
        return out

    return await db.read(explain)


def _uses(plan: str, index: str) -> bool:
    return index in plan


async def test_inbox_queries_use_indexes(client, tenant):
    agent = await tenant.add_user("member")
    conversations = await _bulk_seed(client, tenant.ws, [agent.user_id, tenant.owner.user_id])
    h = tenant.owner.headers
    base = f"{tenant.base}/conversations"
    sqlite = client.runtime.db.is_sqlite

    cases = {
        "": "ix_conversations_ws_last",
        "?unread=true": "ix_conversations_ws_unread_last",
        f"?assignee_id={agent.user_id}": "ix_conversations_ws_assignee_last",
        "?status=pending": "ix_conversations_ws_status_last",
    }
    for query, index in cases.items():
        plans = await _plans(client, base + query, h, "conversations")
        page_sql, page_plan = plans[0]
        assert "ORDER BY" in page_sql
        assert _uses(page_plan, index), f"{query or 'no filter'}: {page_plan}"
        for sql, plan in plans:
            # No statement reads the whole conversations table row by row.
            assert "Seq Scan on conversations" not in plan, (query, sql, plan)
            if sqlite:
                lines = [line for line in plan.splitlines() if "conversations" in line and "SCAN" in line]
                assert all("INDEX" in line for line in lines), (query, sql, plan)

    # total_count / unread_count: this workspace's few buckets, not a count of its conversations.
    # Lead status too: conversations carry their contact's, and the buckets are kept per lead status.
    for query in ("", "?unread=true&status=open", "?status=open&status=pending&lead_status=hot_lead&lead_status=prospect"):
        count_plans = await _plans(client, base + query, h, "conversation_counts")
        for sql, plan in count_plans:
            assert ("SEARCH conversation_counts USING PRIMARY KEY (workspace_id=?" if sqlite else "conversation_counts") in plan, (sql, plan)
            assert "FROM conversations" not in sql
        assert len(await _plans(client, base + query, h, "conversations")) == 1, "only the page reads conversations"
    # One tag: its own buckets.
    for sql, plan in await _plans(client, base + "?tag=vip&status=open", h, "conversation_tag_counts"):
        assert ("SEARCH conversation_tag_counts USING PRIMARY KEY (workspace_id=? AND tag=?" if sqlite else "conversation_tag_counts") in plan, (sql, plan)
    assert len(await _plans(client, base + "?tag=vip", h, "conversations")) == 1, "only the page reads conversations"

    # The second page: the keyset range plus the rows that moved since page 1.
    first = await client.get(base, params={"limit": 50}, headers=h)
    plans = await _plans(client, f"{base}?limit=50&cursor={first.json()['next_cursor']}", h, "conversations")
    assert all(_uses(plan, "ix_conversations_ws_last") for _, plan in plans[:2]), plans

    # A member's inbox (assigned to them or unassigned) still walks the time index.
    member_plans = await _plans(client, base, agent.headers, "conversations")
    assert _uses(member_plans[0][1], "ix_conversations_") and "Seq Scan" not in member_plans[0][1], member_plans[0][1]

    # A search matching few contacts: the contact search index finds them, their conversations
    # are read by contact id (not by walking the inbox and testing every contact).
    url = f"{base}?q=0857000123"
    contact_plans = await _plans(client, url, h, "contacts")
    assert any(("contacts_fts" if sqlite else "ix_contacts_search") in plan for _, plan in contact_plans), contact_plans
    plans = await _plans(client, url, h, "conversations")
    for sql, plan in plans:
        assert ("sqlite_autoindex_conversations_2" if sqlite else "uq_conversations_workspace_id_contact_id") in plan, (sql, plan)
        assert "SCAN conversations" not in plan and "Seq Scan on conversations" not in plan, (sql, plan)

    # Thread history: newest first from the per-conversation time index.
    conversation_id = conversations[1234]["id"]
    plans = await _plans(client, f"{base}/{conversation_id}/messages", h, "messages")
    assert _uses(plans[0][1], "ix_messages_ws_conv_created"), plans[0][1]
