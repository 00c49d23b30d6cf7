"""Event-log rules shared by the WebSocket, SSE and polling readers: who may see an event, when a
client must resync, one page of events for a poller, and retention.

Who may see an event is decided in two places only: its type's audience class
(``kabar.events.AUDIENCE``: managers, contact, author, everyone; an unknown type is managers-only)
and, for events about a customer, the one visibility rule (``kabar.auth.visibility``) applied to
the contact's *current* owner, fetched by the same query that reads the events (a LEFT JOIN on the
contact's primary key, ``repository.read_after``). Why at read time:

- writes pay nothing (the webhook path stays one short transaction; no extra lookup or column);
- a replay after a reconnect applies the same rule as the REST API (what the member may GET now),
  so a contact reassigned to someone else stops leaking its history to the previous assignee;
- the fan-out reader reads each batch once for all sockets of a workspace; each socket then only
  compares user ids, which is what lets one process serve thousands of sockets.

Two refinements: when the contact no longer exists (deleted, merged away), the payload's own
``assignee_id`` decides (absent → only those who see every customer: nothing leaks); and
whoever saw the customer before a reassignment (``previous_assignee_id`` in the payload,
``kabar.events.reassigned``: the previous assignee, or every member when it was unassigned) gets
the event reduced to a notice (``kabar.events.reassignment_notice``), so their open inbox drops
it and learns nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import msgspec

from kabar.auth import visibility
from kabar.auth.scope import Scope, system_scope
from kabar.auth.visibility import Audience, Owner, Viewer
from kabar.config import Settings
from kabar.db.engine import Database
from kabar.events import Audience as Kind
from kabar.events import MEMBER_VIEW, audience_of, reassignment_notice
from kabar.hooks import retention_floor
from kabar.realtime import repository as repo
from kabar.realtime.transport import ws_frame

__all__ = ["LogEvent", "Viewer", "audience", "cleanup", "needs_resync", "read_page", "to_events", "view"]  # Viewer: kabar.auth.visibility
_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class LogEvent:
    """One event as read from the log, shared (read-only) by every subscriber of the workspace."""

    seq: int
    type: str
    data: Any
    created_at: datetime
    contact_id: str | None
    audience: Audience  # kabar.auth.visibility: None = every reader, else who may see it
    member_view: LogEvent | None = field(default=None)  # what the others get (kabar.events.MEMBER_VIEW)
    _message: dict[str, str] | None = field(default=None)
    _frame: bytes | None = field(default=None)
    _sse: str | None = field(default=None)

    def public(self) -> dict[str, Any]:
        return {"seq": self.seq, "type": self.type, "data": self.data, "created_at": self.created_at}

    @property
    def message(self) -> dict[str, str]:
        """The ASGI ``websocket.send`` message, built once per event and handed as is to every
        socket that receives it (no per-socket encoding or dict)."""
        if self._message is None:
            self._message = {"type": "websocket.send", "text": _encode({"op": "event", **self.public()}).decode()}
        return self._message

    @property
    def frame(self) -> bytes:
        """The same message as a ready WebSocket frame, for the transport fast path."""
        if self._frame is None:
            self._frame = ws_frame(self.message["text"])
        return self._frame

    @property
    def sse_data(self) -> str:
        if self._sse is None:
            self._sse = _encode(self.public()).decode()
        return self._sse


def audience(event_type: str, contact_id: str | None, contact_found: Any, owner: Any, data: Any) -> Audience:
    """Who may see an event: its type's class, then (about a customer) the visibility rule on
    ``owner`` (the contact's owner columns, read with the event). See the module docstring."""
    kind = audience_of(event_type)
    if kind is Kind.EVERYONE:
        return visibility.EVERYONE
    if kind is Kind.MANAGERS:
        return visibility.MANAGERS_ONLY
    fields = data if isinstance(data, dict) else {}
    if kind is Kind.AUTHOR:
        author = fields.get("created_by")
        return (author,) if author else visibility.NO_MEMBER
    if contact_id is None:  # about a customer, but which one is not recorded: no member
        return visibility.NO_MEMBER
    if contact_found is None:  # the contact is gone: trust the payload, or no member
        if "assignee_id" not in fields:
            return visibility.NO_MEMBER
        owner = Owner(fields["assignee_id"])
    return visibility.audience(owner)


def to_events(rows: list[Any]) -> list[LogEvent]:
    events = []
    for row in rows:
        seq, aud = int(row.seq), audience(row.type, row.contact_id, row.contact_found, row, row.data)
        event = LogEvent(seq=seq, type=row.type, data=row.data, created_at=row.created_at, contact_id=row.contact_id, audience=aud)
        fields = MEMBER_VIEW.get(row.type)
        if fields is not None and isinstance(row.data, dict):
            data = {name: row.data[name] for name in fields if name in row.data}
            event.member_view = LogEvent(seq, row.type, data, row.created_at, row.contact_id, visibility.EVERYONE)
        elif isinstance(row.data, dict) and "previous_assignee_id" in row.data and audience_of(row.type) is Kind.CONTACT:
            # A reassignment: whoever saw the customer before (its previous assignee, or every
            # member when it was unassigned) is told it is gone, and no more than that.
            before = visibility.audience(Owner(row.data["previous_assignee_id"]))
            event.member_view = LogEvent(seq, row.type, reassignment_notice(row.data), row.created_at, row.contact_id, before)
        events.append(event)
    return events


def view(viewer: Viewer, event: LogEvent) -> LogEvent | None:
    """The copy of ``event`` this viewer receives: the event itself, its members' view, or none."""
    if viewer.sees(event.audience):
        return event
    partial = event.member_view
    return partial if partial is not None and viewer.sees(partial.audience) else None


def needs_resync(since: int | None, oldest: int, last: int) -> bool:
    """A client that saw up to ``since`` cannot be caught up from the log: events it has not seen
    were deleted by retention (``oldest > since + 1``), or it is ahead of the log (a restored
    database), so it must reload its state."""
    if since is None:
        return False
    return since + 1 < oldest or since > last


def read_page(conn: Any, ctx: Scope, since: int | None, limit: int) -> dict[str, Any]:
    """One page for a polling client: ``{data, next_since, has_more, last_seq, oldest_seq, resync}``.

    ``next_since`` is the last seq *examined*, not the last one returned: events a member may not
    see are skipped, and the next page starts after them.
    """
    oldest, last = repo.bounds(conn, ctx)
    resync = needs_resync(since, oldest, last)
    after = max(0, oldest - 1) if since is None or resync else since
    rows = repo.read_after(conn, ctx, after, limit)
    viewer = ctx.viewer
    events = [seen.public() for ev in to_events(rows) if (seen := view(viewer, ev)) is not None]
    next_since = int(rows[-1].seq) if rows else after
    return {
        "data": events,
        "next_since": next_since,
        "has_more": bool(rows) and next_since < last,
        "last_seq": last,
        "oldest_seq": oldest,
        "resync": resync,
    }


# -- retention --------------------------------------------------------------------------------

CLEANUP_CHUNK = 5000  # rows per delete transaction, so the SQLite writer is never held for long


async def cleanup(db: Database, settings: Settings, now: datetime) -> int:
    """Delete events past retention in every workspace: older than ``event_retention_days`` or
    beyond the newest ``event_retention_count``. Only a prefix of each log is deleted, so the
    retained events stay gap-free (what ``needs_resync`` relies on), and nothing above a retention
    floor (events outgoing webhooks have not delivered yet) is deleted. Returns rows deleted."""
    cutoff = now - timedelta(days=settings.event_retention_days)
    keep = max(0, settings.event_retention_count)
    deleted = 0
    for workspace_id, last in await db.read(repo.workspaces_with_events):
        scope = system_scope(workspace_id)
        by_age = await db.read(repo.newest_seq_before, scope, cutoff)
        upto = max(last - keep, by_age)
        # Never delete what an outgoing webhook still has to deliver (kabar.hooks floors).
        floor = await db.read(retention_floor, workspace_id)
        if floor is not None:
            upto = min(upto, floor)
        if upto <= 0:
            continue
        oldest = await db.read(repo.oldest_seq, scope)
        while oldest is not None and oldest <= upto:
            chunk_end = min(upto, oldest + CLEANUP_CHUNK - 1)
            deleted += await db.transaction(lambda uow, end=chunk_end: repo.delete_upto(uow.conn, scope, end))
            oldest = chunk_end + 1
    return deleted
