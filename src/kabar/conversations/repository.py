"""Conversation SQL, tenant-scoped. No business rules here.

The inbox list is ordered by ``(last_message_at, id)`` descending and paged by keyset. Rows move
*up* while someone pages (a new message raises ``last_message_at``); a plain keyset would skip a
row that jumped from below the cursor to above it. So a cursor also carries ``as_of``, the time
page 1 was read, and later pages place every row at the position it had at ``as_of``:

- rows whose ``last_message_at`` is older than ``as_of - SETTLE`` cannot have moved yet (see
  below): the plain keyset range, one indexed range scan;
- newer rows (few: the last minutes' activity; an indexed range too) are placed at the
  ``created_at`` of their newest message *stored* before ``as_of``, found by message id: ids are
  UUIDv7, so ``id < floor(as_of)`` means "generated before as_of" (an indexed lookup per row on
  ``ix_messages_ws_conv_created``). Rows with no such message are new since paging began and are
  left out; the next page 1 (or the realtime feed) shows them at the top.

Why ``SETTLE``: a message's ``created_at`` is the provider's timestamp (whole seconds, sent a
moment before the webhook arrives), so a message stored just after ``as_of`` can carry a time
just before it. Messages delivered later than ``SETTLE`` (a provider retrying for minutes) can
still move their row above the cursor unseen; the realtime feed moves it in the open inbox.

This relies on ``last_message_at`` being the newest message's ``created_at`` and never
decreasing, which ingest and ``create_outbound_message`` both keep.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Select,
    Text,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import array

from kabar.auth import visibility
from kabar.auth.scope import Scope
from kabar.contacts.repository import Search, search
from kabar.db import tables as t
from kabar.db.prepared import Prepared

c = t.conversations
k = t.contacts
m = t.messages
cc = t.conversation_counts
tc = t.conversation_tag_counts

# The contact fields embedded in a conversation row (``conversation_from_join``). Tags come as
# their JSON text, decoded there by msgspec: the generic JSON type's json.loads per row was a
# tenth of an inbox page's time.
CONTACT_SUMMARY_COLUMNS = (
    k.c.phone_e164, k.c.whatsapp_user_id, k.c.username, k.c.name, k.c.profile_name, k.c.lead_status, k.c.lead_score, cast(k.c.tags, Text).label("tags_json")
)
# How long after as_of a message timestamped before it may still be stored (see the docstring).
SETTLE = timedelta(minutes=2)
# Rows active since as_of - SETTLE, considered per page; more than this many in the minutes
# someone pages through an inbox is not a realistic workload.
MAX_RECENT_ROWS = 1000


def _id_floor(at: datetime) -> str:
    """The smallest UUIDv7 text of the millisecond ``at``: ids generated earlier sort below it."""
    ms = f"{int(at.timestamp() * 1000):012x}"
    return f"{ms[:8]}-{ms[8:]}-7000-8000-000000000000"


@dataclass(frozen=True, slots=True)
class ListFilters:
    unread: bool = False
    statuses: tuple[str, ...] = ()
    lead_statuses: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    assignee_id: str | None = None  # a user id, or "unassigned"
    q: str | None = None
    # ``q`` resolved by ``with_search``: the matching contacts' ids when they are few, else the
    # search clause itself.
    matched: tuple[str, ...] | Search | None = None


# A search matching at most this many contacts is answered from those contacts' conversations
# (by contact id, on the unique (workspace_id, contact_id) index), whatever the planner thinks of
# a substring's selectivity; a more common term walks the inbox by time and fills a page fast.
FEW_MATCHES = 1000
# ``+column`` is SQLite's way to say "do not use an index for this term" (as in
# kabar.contacts.repository.filtered: the FTS matches drive, not the workspace's index).
_UNINDEXED_WORKSPACE = literal_column("+contacts.workspace_id")


def with_search(conn: Connection, ctx: Scope, f: ListFilters) -> ListFilters:
    """Resolve ``q`` against the contact search index, once per request."""
    if not f.q or f.matched is not None:
        return f
    found = search(conn, f.q)
    if found is None:
        return replace(f, q=None)
    if conn.dialect.name == "sqlite" and not found.fts_driven:
        return replace(f, matched=found)  # the FTS index already counted more than FEW_MATCHES
    if found.fts_driven:
        ids = select(k.c.id).where(_UNINDEXED_WORKSPACE == literal(ctx.workspace_id), found.clause)
    else:
        ids = ctx.select(k, k.c.id).where(found.clause)
    matches = conn.execute(ids.limit(FEW_MATCHES + 1)).scalars().all()
    return replace(f, matched=tuple(matches) if len(matches) <= FEW_MATCHES else found)


def _contact_join():  # noqa: ANN202
    return c.join(k, and_(k.c.id == c.c.contact_id, k.c.workspace_id == c.c.workspace_id))


# -- the inbox list ----------------------------------------------------------------------------
# Its statements are built from the *shape* of the filters (which filters, how many values each)
# with every value a bind parameter, compiled once per shape and dialect and run on the driver
# (``kabar.db.prepared``): a page costs no SQLAlchemy statement building or compilation. A search
# (``q``) adds its clause and goes through SQLAlchemy as before.

# A list row: the conversation columns in ConversationOut's order, then the contact summary's
# (``conversation_from_list_row`` turns it into output by position).
LIST_COLUMNS = (
    c.c.id, c.c.status, c.c.assignee_id, c.c.unread_count, c.c.last_message_at, c.c.last_message_preview,
    c.c.last_inbound_at, c.c.ai_paused, c.c.snoozed_until, c.c.created_at, c.c.updated_at,
    c.c.contact_id, k.c.phone_e164, k.c.whatsapp_user_id, k.c.username, k.c.name, k.c.profile_name, c.c.lead_status, k.c.lead_score,
    cast(k.c.tags, Text).label("tags_json"),
)
_AT, _ID = 4, 0  # positions of last_message_at and id in LIST_COLUMNS
# Shapes with more tags than this are compiled per request instead of kept.
_MAX_CACHED_TAGS = 8


@dataclass(frozen=True, slots=True)
class _Shape:
    """What decides a list statement's SQL text (the values are bind parameters)."""

    dialect: str
    member: bool  # sees only conversations assigned to them or to nobody
    unread: bool
    statuses: int
    lead_statuses: int
    tags: int
    assignee: str  # "", "unassigned" or "user"
    # SQLite, a search matching few contacts: their conversations are read by contact id, and the
    # page is ordered by an expression (``+column``, the same order) so that the planner cannot
    # walk ix_conversations_ws_last instead; it did, depending on sqlite_stat1, reading up to the
    # whole inbox to find a handful of rows.
    by_contact_ids: bool = False


def _shape(dialect: str, ctx: Scope, f: ListFilters) -> _Shape:
    assignee = "" if not f.assignee_id else "unassigned" if f.assignee_id == "unassigned" else "user"
    by_ids = dialect == "sqlite" and f.matched is not None and not isinstance(f.matched, Search)
    return _Shape(dialect, not ctx.sees_everything, f.unread, len(f.statuses), len(f.lead_statuses), len(f.tags), assignee, by_ids)


def _params(ctx: Scope, f: ListFilters) -> dict[str, Any]:
    """The bind values of ``_conditions`` for these filters."""
    params: dict[str, Any] = {"ws": ctx.workspace_id, "user_id": ctx.user_id, "assignee": f.assignee_id}
    params.update((f"status_{i}", value) for i, value in enumerate(f.statuses))
    params.update((f"lead_{i}", value) for i, value in enumerate(f.lead_statuses))
    params.update((f"tag_{i}", value) for i, value in enumerate(f.tags))
    return params


def _binds(prefix: str, n: int) -> list[Any]:
    return [bindparam(f"{prefix}_{i}") for i in range(n)]


def _tags_any(dialect: str, tags: list[Any]) -> Any:
    """``conversations.tags`` (the contact's, copied) contains any of ``tags`` (bind parameters)."""
    if dialect == "postgresql":
        return c.c.tags.op("?|")(array(tags, type_=Text))
    each = func.json_each(c.c.tags).table_valued("value")
    return exists(select(literal(1)).select_from(each).where(each.c.value.in_(tags)))


def _conditions(shape: _Shape, table: Any = c) -> list[Any]:
    """The list filters on ``conversations``, or on a bucket table (``conversation_counts``, or
    ``conversation_tag_counts`` for one tag) for the counts."""
    col = table.c
    counting = table is not c
    out = [col.workspace_id == bindparam("ws")]
    assignee = col.assignee_key if counting else col.assignee_id
    if shape.member:
        out.append(visibility.member_clause(table, bindparam("user_id")))
    if shape.unread:
        out.append(col.unread.is_(True) if counting else col.unread_count > 0)
    if shape.statuses:
        out.append(col.status.in_(_binds("status", shape.statuses)))
    if shape.lead_statuses:
        out.append(col.lead_status.in_(_binds("lead", shape.lead_statuses)))
    if shape.assignee == "unassigned":
        out.append(assignee == "" if counting else assignee.is_(None))
    elif shape.assignee == "user":
        out.append(assignee == bindparam("assignee"))
    if shape.tags:
        out.append(col.tag == bindparam("tag_0") if counting else _tags_any(shape.dialect, _binds("tag", shape.tags)))
    return out


def _search_condition(f: ListFilters) -> Any:
    assert not f.q or f.matched is not None, "resolve q with with_search() first"
    if isinstance(f.matched, Search):
        return f.matched.clause
    return c.c.contact_id.in_(f.matched)


_ORDER = (c.c.last_message_at.desc(), c.c.id.desc())
_ORDER_UNINDEXED = (literal_column("+conversations.last_message_at").desc(), c.c.id.desc())


def _order(shape: _Shape) -> tuple[Any, ...]:
    return _ORDER_UNINDEXED if shape.by_contact_ids else _ORDER


def _first_page(shape: _Shape) -> Select:
    return select(*LIST_COLUMNS).select_from(_contact_join()).where(*_conditions(shape)).order_by(*_order(shape)).limit(bindparam("limit"))


def _settled_page(shape: _Shape) -> Select:
    """Rows that cannot have moved since as_of, below the cursor (see the module docstring). `<=`
    first keeps this a range scan on SQLite too."""
    return _first_page(shape).where(
        c.c.last_message_at <= bindparam("settled_bound"),
        or_(c.c.last_message_at < bindparam("at"), c.c.id < bindparam("last_id")),
    )


def _recent_rows(shape: _Shape) -> Select:
    """Rows active since ``as_of - SETTLE``, each with its position at as_of."""
    position = (
        select(m.c.created_at)
        .where(m.c.workspace_id == bindparam("ws"), m.c.conversation_id == c.c.id, m.c.id < bindparam("stored_before"))
        .order_by(m.c.created_at.desc(), m.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return (
        select(*LIST_COLUMNS, position.label("as_of_position"))
        .select_from(_contact_join())
        .where(*_conditions(shape), c.c.last_message_at > bindparam("horizon"))
        .order_by(*_order(shape))
        .limit(MAX_RECENT_ROWS)
    )


def _totals(table: Any) -> tuple[Any, Any]:
    """Total and unread summed over a bucket table's rows."""
    return func.coalesce(func.sum(table.c.n), 0), func.coalesce(func.sum(case((table.c.unread, table.c.n), else_=0)), 0)


def _counts(shape: _Shape, kind: str) -> Select:
    """Total and unread from a bucket table (``kind`` "buckets", or "tag_buckets" for one tag),
    or counted from the conversations ("rows": several tags; "search_rows": joined with their
    contacts, for the search clause)."""
    if kind in ("buckets", "tag_buckets"):
        table = tc if kind == "tag_buckets" else cc
        return select(*_totals(table)).where(*_conditions(shape, table))
    unread = func.coalesce(func.sum(case((c.c.unread_count > 0, 1), else_=0)), 0)
    stmt = select(func.count(), unread).where(*_conditions(shape))
    return stmt.select_from(_contact_join()) if kind == "search_rows" else stmt.select_from(c)


_STATEMENTS = {"first": _first_page, "settled": _settled_page, "recent": _recent_rows}
_prepared: dict[tuple[_Shape, str], Prepared] = {}


def _statement(shape: _Shape, kind: str) -> Prepared:
    found = _prepared.get((shape, kind))
    if found is None:
        stmt = _STATEMENTS[kind](shape) if kind in _STATEMENTS else _counts(shape, kind)
        found = Prepared(stmt)
        if shape.tags <= _MAX_CACHED_TAGS:
            _prepared[(shape, kind)] = found
    return found


# Runs a statement with its parameters, rows as tuples: a ``Reader`` or a SQLAlchemy connection.
Run = Callable[[Prepared, dict[str, Any]], Sequence[Any]]


def runner(conn: Connection, f: ListFilters) -> Run:
    """A ``Run`` through SQLAlchemy on ``conn``, with the search clause of ``f`` added to every
    statement (searches are not prepared: their clause varies)."""
    clause = _search_condition(f) if f.matched is not None else None

    def run(statement: Prepared, params: dict[str, Any]) -> Sequence[Any]:
        stmt = statement.stmt if clause is None else statement.stmt.where(clause)
        return conn.execute(stmt, params).all()

    return run


def list_page(
    run: Run,
    dialect: str,
    ctx: Scope,
    f: ListFilters,
    *,
    limit: int,
    after: tuple[datetime, str] | None,
    as_of: datetime,
) -> list[tuple[tuple[datetime, str], Any]]:
    """Up to ``limit`` rows (``LIST_COLUMNS``) after the cursor key ``after``, each with its paging key."""
    shape = _shape(dialect, ctx, f)
    params = _params(ctx, f)
    params["limit"] = limit
    if after is None:
        return [((row[_AT], row[_ID]), row) for row in run(_statement(shape, "first"), params)]
    at, last_id = after
    horizon = as_of - SETTLE
    # (Two statements, not one UNION ALL: measured, the union's subquery construction costs more
    # Python time than the second round trip saves, on both backends.)
    params.update(settled_bound=min(at, horizon), at=at, last_id=last_id, horizon=horizon, stored_before=_id_floor(as_of))
    keyed = [((row[_AT], row[_ID]), row) for row in run(_statement(shape, "settled"), params)]
    # Recent rows, at their as_of position.
    for row in run(_statement(shape, "recent"), params):
        at_then = row[-1]
        if at_then is not None and (at_then, row[_ID]) < (at, last_id):
            keyed.append(((at_then, row[_ID]), row))
    keyed.sort(key=lambda item: item[0], reverse=True)
    return keyed[:limit]


def counts(run: Run, dialect: str, ctx: Scope, f: ListFilters) -> tuple[int, int]:
    """(matching conversations, those of them with unread messages).

    Answered from the buckets triggers keep (a few rows per workspace) for every filter but a
    search or several tags (conversations with any of them: per-tag counts overlap), which count
    the matching rows."""
    if f.matched is not None:
        kind = "search_rows"
    elif len(f.tags) > 1:
        kind = "rows"
    else:
        kind = "tag_buckets" if f.tags else "buckets"
    [(total, unread)] = run(_statement(_shape(dialect, ctx, f), kind), _params(ctx, f))
    return int(total), int(unread)


def counts_by_status(conn: Connection, ctx: Scope) -> dict[str, tuple[int, int]]:
    """{status: (conversations, with unread messages)} the caller can see."""
    stmt = ctx.select_visible(cc, cc, cc.c.status, *_totals(cc)).group_by(cc.c.status)
    return {status: (int(n), int(unread)) for status, n, unread in conn.execute(stmt)}


def get_joined(conn: Connection, scope: Scope, conversation_id: str) -> Any:
    """One conversation with its contact summary columns, or None (another workspace's id → None).

    Regardless of visibility: for Kabar acting for the workspace (ARI, jobs, with a system scope)
    and for rereading a row the caller was already shown; callers' own reads use ``get_visible``."""
    stmt = scope.select(c, c, *CONTACT_SUMMARY_COLUMNS).select_from(_contact_join()).where(c.c.id == conversation_id)
    return conn.execute(stmt).first()


def get_visible(conn: Connection, ctx: Scope, conversation_id: str) -> Any:
    """The conversation if ``ctx`` may see it (members: assigned to them or unassigned), else None."""
    stmt = ctx.select_visible(c, c, c, *CONTACT_SUMMARY_COLUMNS).select_from(_contact_join())
    return conn.execute(stmt.where(c.c.id == conversation_id)).first()


def update_conversation(conn: Connection, scope: Scope, conversation_id: str, values: dict[str, Any]) -> None:
    conn.execute(update(c).where(c.c.workspace_id == scope.workspace_id, c.c.id == conversation_id).values(**values))
