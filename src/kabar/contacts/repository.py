"""SQL for contacts and their notes. Every statement starts from the caller's Scope (``scope.select`` /
``scope.select_visible`` or ``scope.workspace_id``); no business rules here."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    PrimaryKeyConstraint,
    Select,
    Text,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal,
    literal_column,
    select,
    text,
    tuple_,
    UniqueConstraint,
    update,
)
from sqlalchemy.dialects.postgresql import array

from kabar.auth import visibility
from kabar.auth.scope import Scope
from kabar.db import tables as t
from kabar.db.prepared import Prepared, Reader, Row
from kabar.db.types import UTCDateTime

k = t.contacts
n = t.contact_notes

# -- search -----------------------------------------------------------------------------------

_LIKE_SPECIAL = re.compile(r"([\\%_])")
_PHONEISH = re.compile(r"^[\d\s()+./-]+$")
_MAX_TERMS = 8
# Trigram indexes (FTS5 trigram, pg_trgm) can only look up substrings of 3+ characters.
TRIGRAM = 3


def search_terms(q: str) -> list[str]:
    """Lower-cased words of ``q``; phone-looking input becomes one term of its digits (keeping a
    leading ``+``) so ``0812 3456`` and ``+62 812-3456`` find the stored ``0812…``/``+62812…``."""
    needle = q.strip().lower()
    if _PHONEISH.match(needle) and sum(ch.isdigit() for ch in needle) >= 3:
        return [("+" if needle.startswith("+") else "") + re.sub(r"\D", "", needle)]
    return needle.split()[:_MAX_TERMS]


def _contains(term: str):  # noqa: ANN202
    return k.c.search_text.like("%" + _LIKE_SPECIAL.sub(r"\\\1", term) + "%", escape="\\")


def _fts_query(terms: Iterable[str]) -> str:
    """An FTS5 MATCH expression: every term as a quoted phrase (implicit AND)."""
    return " ".join('"' + term.replace('"', '""') + '"' for term in terms)


@dataclass(slots=True)
class Search:
    clause: Any
    # SQLite: read the few FTS matches by rowid instead of walking the workspace newest first.
    fts_driven: bool = False


def search(conn: Connection, q: str) -> Search | None:
    """Where-clause for ``q``. Terms of 3+ characters go through the trigram index: on SQLite the
    FTS5 table gives the matching rowids; on PostgreSQL the GIN index serves the LIKEs directly
    (its planner weighs that against walking ix_contacts_ws_created from its statistics).
    Shorter terms are checked on the rows the index (or the workspace walk) yields."""
    terms = search_terms(q)
    if not terms:
        return None
    if conn.dialect.name != "sqlite":
        return Search(and_(*(_contains(term) for term in terms)))
    indexed = [term for term in terms if len(term) >= TRIGRAM]
    if not indexed:
        return Search(and_(*(_contains(term) for term in terms)))
    # Substring matches of the trigram tokenizer are exact, so indexed terms need no LIKE.
    expression = _fts_query(indexed)
    matches = select(literal_column("rowid")).select_from(text("contacts_fts")).where(
        text("contacts_fts MATCH :fts_query").bindparams(fts_query=expression)
    )
    # Walking the workspace's newest-first index and testing each row against the match list is
    # fast when matches are common (the first page fills at once), slow when they are few; reading
    # the matches by rowid and sorting them is the reverse. SQLite cannot tell the two apart
    # (without ANALYZE it always walks; with it, it may sort 50,000 matches), so count the matches
    # (capped, from the FTS index alone) and write the query so that it has one way to run.
    few = conn.execute(_COUNT_MATCHES, {"fts_query": expression, "cap": FTS_DRIVES_BELOW}).scalar_one() < FTS_DRIVES_BELOW
    clauses = [_contains(term) for term in terms if len(term) < TRIGRAM]
    rowid = literal_column("contacts.rowid" if few else "+contacts.rowid")  # "+": not usable to look rows up
    clauses.append(rowid.in_(matches.scalar_subquery()))
    return Search(and_(*clauses), fts_driven=few)


FTS_DRIVES_BELOW = 1000
_COUNT_MATCHES = text("SELECT count(*) FROM (SELECT rowid FROM contacts_fts WHERE contacts_fts MATCH :fts_query LIMIT :cap)")
# ``+column`` is SQLite's way to say "do not use an index for this term".
_UNINDEXED_WORKSPACE = literal_column("+contacts.workspace_id")


def _tags_any(conn: Connection, tags: Sequence[str]):  # noqa: ANN201
    """``contacts.tags`` (a JSON array) contains any of ``tags``."""
    if conn.dialect.name == "postgresql":
        return k.c.tags.op("?|")(array(list(tags), type_=Text))
    each = func.json_each(k.c.tags).table_valued("value")
    return exists(select(literal(1)).select_from(each).where(each.c.value.in_(list(tags))))


# -- contacts ---------------------------------------------------------------------------------


@dataclass(slots=True)
class ContactFilters:
    q: str | None = None
    lead_statuses: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    assignee_id: str | None = None  # a user id, or "unassigned"


def visible(ctx: Scope, *columns: Any) -> Select:
    """Contacts the caller may see (a member: assigned to them or to nobody)."""
    return ctx.select_visible(k, k, *columns)


def get_contact(conn: Connection, ctx: Scope, contact_id: str) -> Any:
    return conn.execute(visible(ctx).where(k.c.id == contact_id)).first()


def contact_row(conn: Connection, scope: Scope, contact_id: str) -> Any:
    """Regardless of visibility (service code acting for the workspace)."""
    return conn.execute(scope.select(k).where(k.c.id == contact_id)).first()


def contact_by_phone(conn: Connection, scope: Scope, phone_e164: str) -> Any:
    """Regardless of visibility: a phone is unique in the workspace, whoever can see its contact."""
    return conn.execute(scope.select(k).where(k.c.phone_e164 == phone_e164)).first()


def contact_by_identity(conn: Connection, scope: Scope, column: str, value: str) -> Any:
    """Regardless of visibility, by ``whatsapp_user_id`` or ``username`` (each unique per workspace)."""
    assert column in ("whatsapp_user_id", "username")
    return conn.execute(scope.select(k).where(k.c[column] == value)).first()


def contacts_by_phones(conn: Connection, scope: Scope, phones: Sequence[str], chunk: int = 500) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for start in range(0, len(phones), chunk):
        part = list(phones[start : start + chunk])
        rows = conn.execute(scope.select(k).where(k.c.phone_e164.in_(part))).all()
        found.update((row.phone_e164, row) for row in rows)
    return found


def insert_contacts(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(k), rows)


def update_contact(conn: Connection, scope: Scope, contact_id: str, values: dict[str, Any]) -> None:
    conn.execute(update(k).where(k.c.workspace_id == scope.workspace_id, k.c.id == contact_id).values(**values))


def update_contacts(conn: Connection, scope: Scope, rows: list[dict[str, Any]]) -> None:
    """Many updates of the same columns in one executemany; each row has ``b_id`` and the values."""
    if not rows:
        return
    columns = [name for name in rows[0] if name != "b_id"]
    conn.execute(
        update(k)
        .where(k.c.workspace_id == scope.workspace_id, k.c.id == bindparam("b_id"))
        .values({name: bindparam(name) for name in columns}),
        rows,
    )


def delete_contact(conn: Connection, scope: Scope, contact_id: str) -> None:
    # Conversations, messages, notes and ARI rows go with it (ON DELETE CASCADE).
    conn.execute(delete(k).where(k.c.workspace_id == scope.workspace_id, k.c.id == contact_id))


def filtered(conn: Connection, ctx: Scope, f: ContactFilters, *columns: Any) -> Select:
    found = search(conn, f.q) if f.q else None
    if found is not None and found.fts_driven:
        # The same workspace and visibility filter as ``visible``, written so that SQLite looks
        # rows up by the FTS rowids rather than walking ix_contacts_ws_created.
        stmt = select(*columns) if columns else select(k)
        stmt = stmt.where(_UNINDEXED_WORKSPACE == literal(ctx.workspace_id))
        visible_clause = ctx.visible(k)
        if visible_clause is not None:
            stmt = stmt.where(visible_clause)
    else:
        stmt = visible(ctx, *columns)
    if found is not None:
        stmt = stmt.where(found.clause)
    if f.lead_statuses:
        stmt = stmt.where(k.c.lead_status.in_(f.lead_statuses))
    if f.tags:
        stmt = stmt.where(_tags_any(conn, f.tags))
    if f.assignee_id == "unassigned":
        stmt = stmt.where(k.c.assignee_id.is_(None))
    elif f.assignee_id:
        stmt = stmt.where(k.c.assignee_id == f.assignee_id)
    return stmt


def newest_first(stmt: Select, after: tuple[datetime, str] | None, limit: int) -> Select:
    """Keyset page on (created_at, id) descending: stable while rows are added."""
    if after is not None:
        stmt = stmt.where(tuple_(k.c.created_at, k.c.id) < tuple_(literal(after[0], UTCDateTime()), literal(after[1])))
    return stmt.order_by(k.c.created_at.desc(), k.c.id.desc()).limit(limit)


def list_page(conn: Connection, ctx: Scope, f: ContactFilters, after: tuple[datetime, str] | None, limit: int) -> list[Any]:
    return conn.execute(newest_first(filtered(conn, ctx, f), after, limit)).all()


def export_batch(conn: Connection, ctx: Scope, f: ContactFilters, after: tuple[datetime, str] | None, limit: int) -> list[Any]:
    """A page of contacts with their assignee's email (for CSV)."""
    stmt = filtered(conn, ctx, f, k, t.users.c.email.label("assignee_email")).outerjoin_from(
        k, t.users, t.users.c.id == k.c.assignee_id
    )
    return conn.execute(newest_first(stmt, after, limit)).all()


# -- members ----------------------------------------------------------------------------------


def is_member(conn: Connection, ctx: Scope, user_id: str) -> bool:
    return conn.execute(ctx.select(t.members, t.members.c.user_id).where(t.members.c.user_id == user_id)).first() is not None


def member_ids_by_email(conn: Connection, ctx: Scope) -> dict[str, str]:
    rows = conn.execute(
        ctx.select(t.members, t.users.c.email, t.users.c.id).join_from(t.members, t.users, t.users.c.id == t.members.c.user_id)
    ).all()
    return {row.email.lower(): row.id for row in rows}


# -- notes ------------------------------------------------------------------------------------


def notes_page(conn: Connection, ctx: Scope, contact_id: str, after: tuple[datetime, str] | None, limit: int) -> list[Any]:
    stmt = ctx.select(n).where(n.c.contact_id == contact_id)
    if after is not None:
        stmt = stmt.where(tuple_(n.c.created_at, n.c.id) < tuple_(literal(after[0], UTCDateTime()), literal(after[1])))
    return conn.execute(stmt.order_by(n.c.created_at.desc(), n.c.id.desc()).limit(limit)).all()


def get_note(conn: Connection, ctx: Scope, contact_id: str, note_id: str) -> Any:
    return conn.execute(ctx.select(n).where(n.c.contact_id == contact_id, n.c.id == note_id)).first()


def insert_note(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(n).values(**values))


def update_note(conn: Connection, scope: Scope, note_id: str, values: dict[str, Any]) -> None:
    conn.execute(update(n).where(n.c.workspace_id == scope.workspace_id, n.c.id == note_id).values(**values))


def delete_note(conn: Connection, scope: Scope, note_id: str) -> None:
    conn.execute(delete(n).where(n.c.workspace_id == scope.workspace_id, n.c.id == note_id))


def notes_export_batch(
    conn: Connection, ctx: Scope, contact_id: str | None, after: tuple[datetime, str] | None, limit: int
) -> list[Any]:
    """Notes (newest first) with their contact's name and phone and the author's email; only
    notes of contacts the caller may see."""
    stmt = (
        ctx.select(n, n, k.c.name.label("contact_name"), k.c.phone_e164.label("contact_phone"), t.users.c.email.label("author_email"))
        .join_from(n, k, and_(k.c.id == n.c.contact_id, k.c.workspace_id == n.c.workspace_id))
        .outerjoin(t.users, t.users.c.id == n.c.author_id)
    )
    visible_clause = ctx.visible(k)
    if visible_clause is not None:
        stmt = stmt.where(visible_clause)
    if contact_id is not None:
        stmt = stmt.where(n.c.contact_id == contact_id)
    if after is not None:
        stmt = stmt.where(tuple_(n.c.created_at, n.c.id) < tuple_(literal(after[0], UTCDateTime()), literal(after[1])))
    return conn.execute(stmt.order_by(n.c.created_at.desc(), n.c.id.desc()).limit(limit)).all()


# -- by-phone context (the bots' hot path) ----------------------------------------------------
# Three indexed lookups, built once and run on the driver (``kabar.db.prepared``): the contact by
# its unique (workspace_id, phone_e164), its 5 newest notes by (workspace_id, contact_id,
# created_at), and its conversation's 10 newest messages by (workspace_id, conversation_id,
# created_at) with the conversation id from the unique (workspace_id, contact_id) in a scalar
# subquery. SQLite runs them as three statements (in process, each costs microseconds);
# PostgreSQL as one (``CONTEXT_ONE_TRIP``: the notes and messages as arrays of rows), since there
# every statement is a network round trip.

_CONTEXT_CONTACT_COLUMNS = (
    k.c.id,
    k.c.phone_e164,
    k.c.name,
    k.c.profile_name,
    k.c.email,
    k.c.lead_status,
    k.c.lead_score,
    k.c.tags,
    k.c.assignee_id,
    k.c.first_contact_at,
    k.c.last_interaction_at,
)
CONTEXT_CONTACT = select(*_CONTEXT_CONTACT_COLUMNS).where(
    k.c.workspace_id == bindparam("ws"), k.c.phone_e164 == bindparam("phone")
)
# A member's share (kabar.auth.visibility, with the user id as a bind parameter).
CONTEXT_CONTACT_MEMBER = CONTEXT_CONTACT.where(visibility.member_clause(k, bindparam("user_id")))
_m = t.messages


def _notes_of(contact_id: Any) -> Select:
    return (
        select(n.c.id, n.c.content, n.c.created_at)
        .where(n.c.workspace_id == bindparam("ws"), n.c.contact_id == contact_id)
        .order_by(n.c.created_at.desc(), n.c.id.desc())
        .limit(5)
    )


def _messages_of(contact_id: Any) -> Select:
    conversation = (
        select(t.conversations.c.id)
        .where(t.conversations.c.workspace_id == bindparam("ws"), t.conversations.c.contact_id == contact_id)
        .correlate(k)
        .scalar_subquery()
    )
    return (
        select(_m.c.id, _m.c.direction, _m.c.type, _m.c.text, _m.c.created_at)
        .where(_m.c.workspace_id == bindparam("ws"), _m.c.conversation_id == conversation)
        .order_by(_m.c.created_at.desc(), _m.c.id.desc())
        .limit(10)
    )


def _rows_array(stmt: Select) -> Any:
    """PostgreSQL ``array((SELECT (a, b, …) …))``: the statement's rows, in order, as one value."""
    return func.array(stmt.with_only_columns(tuple_(*stmt.selected_columns)).scalar_subquery())


CONTEXT_NOTES = _notes_of(bindparam("contact_id"))
CONTEXT_MESSAGES = _messages_of(bindparam("contact_id"))


def _one_trip(contact: Select) -> Select:
    return contact.add_columns(_rows_array(_notes_of(k.c.id)), _rows_array(_messages_of(k.c.id)))


CONTEXT_ONE_TRIP = _one_trip(CONTEXT_CONTACT)
CONTEXT_ONE_TRIP_MEMBER = _one_trip(CONTEXT_CONTACT_MEMBER)

_CONTACT = Prepared(CONTEXT_CONTACT)
_CONTACT_MEMBER = Prepared(CONTEXT_CONTACT_MEMBER)
_NOTES = Prepared(CONTEXT_NOTES)
_MESSAGES = Prepared(CONTEXT_MESSAGES)
_ONE_TRIP = Prepared(CONTEXT_ONE_TRIP)
_ONE_TRIP_MEMBER = Prepared(CONTEXT_ONE_TRIP_MEMBER)
_CONTACT_WIDTH = len(_CONTEXT_CONTACT_COLUMNS)


def phone_context(reader: Reader, ctx: Scope, phone_e164: str) -> tuple[Row, list[Row], list[Row]] | None:
    """The contact (columns as ``CONTEXT_CONTACT``), its notes and its recent messages, as tuples."""
    params: dict[str, Any] = {"ws": ctx.workspace_id, "phone": phone_e164}
    if not ctx.sees_everything:
        params["user_id"] = ctx.user_id
    if reader.dialect_name == "postgresql":
        row = reader.first(_ONE_TRIP if ctx.sees_everything else _ONE_TRIP_MEMBER, **params)
        if row is None:
            return None
        return row[:_CONTACT_WIDTH], row[_CONTACT_WIDTH], row[_CONTACT_WIDTH + 1]
    contact = reader.first(_CONTACT if ctx.sees_everything else _CONTACT_MEMBER, **params)
    if contact is None:
        return None
    notes = reader.all(_NOTES, ws=ctx.workspace_id, contact_id=contact[0])
    messages = reader.all(_MESSAGES, ws=ctx.workspace_id, contact_id=contact[0])
    return contact, notes, messages


# -- merge ------------------------------------------------------------------------------------


def conversation_of(conn: Connection, scope: Scope, contact_id: str) -> Any:
    c = t.conversations
    return conn.execute(scope.select(c).where(c.c.contact_id == contact_id)).first()


def update_conversation(conn: Connection, scope: Scope, conversation_id: str, values: dict[str, Any]) -> None:
    c = t.conversations
    conn.execute(update(c).where(c.c.workspace_id == scope.workspace_id, c.c.id == conversation_id).values(**values))


def delete_conversation(conn: Connection, scope: Scope, conversation_id: str) -> None:
    c = t.conversations
    conn.execute(delete(c).where(c.c.workspace_id == scope.workspace_id, c.c.id == conversation_id))


def _refers_to(table: Any, column: str, target: str) -> bool:
    return column in table.c and any(fk.column.table.name == target for fk in table.c[column].foreign_keys)


def _unique_on(table: Any, column: str) -> bool:
    """Whether ``column`` is part of a primary key or unique constraint of ``table``."""
    return any(
        isinstance(constraint, PrimaryKeyConstraint | UniqueConstraint) and column in constraint.columns
        for constraint in table.constraints
    )


def move_references(conn: Connection, scope: Scope, column: str, target: str, old: str, new: str) -> None:
    """Point every row that references ``target`` row ``old`` through ``column`` at ``new``
    (every table of the schema, so tables added later move too). Where ``column`` is part of a
    unique key and ``new`` already has rows, the kept side wins and ``old``'s rows go."""
    for table in t.metadata.sorted_tables:
        if table is t.conversations:
            continue  # a contact's conversation is merged by the service (one per contact)
        if not _refers_to(table, column, target) or "workspace_id" not in table.c:
            continue
        col = table.c[column]
        scoped = and_(table.c.workspace_id == scope.workspace_id, col == old)
        if _unique_on(table, column):
            taken = conn.execute(select(literal(1)).where(table.c.workspace_id == scope.workspace_id, col == new).limit(1)).first()
            if taken is not None:
                conn.execute(delete(table).where(scoped))
                continue
        conn.execute(update(table).where(scoped).values({column: new}))
