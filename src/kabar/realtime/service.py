"""Event-log rules shared by the WebSocket, SSE and polling readers: who may see an event, when a
client must resync, one page of events for a poller, and retention.

Member visibility (API.md: a ``member`` sees contacts assigned to them or unassigned) is decided
when an event is *read*, from the contact's current assignee, fetched by the same query that reads
the events (a LEFT JOIN on the contact's primary key, ``repository.read_after``). Why at read time:

- writes pay nothing (the webhook path stays one short transaction; no extra lookup or column);
- a replay after a reconnect applies the same rule as the REST API (what the member may GET now),
  so a contact reassigned to someone else stops leaking its history to the previous assignee;
- the fan-out reader reads each batch once for all sockets of a workspace; each socket then only
  compares user ids, which is what lets one process serve thousands of sockets.

Two refinements: when the contact no longer exists (deleted, merged away), the payload's own
``assignee_id`` decides (absent → hidden: nothing leaks); and an event whose payload names the
member as ``previous_assignee_id`` reaches them, so the person who just lost a contact learns it
(writers of reassignments may include that field).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import msgspec

from kabar.auth.scope import Scope
from kabar.config import Settings
from kabar.db.engine import Database
from kabar.hooks import retention_floor
from kabar.realtime import repository as repo
from kabar.realtime.transport import ws_frame

EVERYONE: None = None  # audience of an event every staff member may see
_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class LogEvent:
    """One event as read from the log, shared (read-only) by every subscriber of the workspace."""

    seq: int
    type: str
    data: Any
    created_at: datetime
    contact_id: str | None
    # None: every staff member; otherwise the only member user ids that may see it.
    audience: tuple[str, ...] | None
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


@dataclass(frozen=True, slots=True)
class Viewer:
    """What a subscriber may see: everything (owner, admin, API key) or a member's share."""

    sees_all: bool
    user_id: str | None

    @classmethod
    def of(cls, ctx: Scope) -> Viewer:
        return cls(sees_all=ctx.sees_everything, user_id=ctx.user_id)

    def sees(self, audience: tuple[str, ...] | None) -> bool:
        return self.sees_all or audience is None or self.user_id in audience


def audience(contact_id: str | None, contact_found: Any, assignee_id: str | None, data: Any) -> tuple[str, ...] | None:
    """Which members may see an event (None = all); see the module docstring for the rule."""
    if contact_id is None:
        return EVERYONE
    previous = data.get("previous_assignee_id") if isinstance(data, dict) else None
    if contact_found is None:  # the contact is gone: trust the payload, or show nobody
        if isinstance(data, dict) and "assignee_id" in data:
            assignee_id = data["assignee_id"]
        else:
            return tuple(p for p in (previous,) if p)
    if assignee_id is None:
        return EVERYONE
    return (assignee_id, previous) if previous and previous != assignee_id else (assignee_id,)


def to_events(rows: list[Any]) -> list[LogEvent]:
    return [
        LogEvent(
            seq=int(row.seq),
            type=row.type,
            data=row.data,
            created_at=row.created_at,
            contact_id=row.contact_id,
            audience=audience(row.contact_id, row.contact_found, row.assignee_id, row.data),
        )
        for row in rows
    ]


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
    oldest, last = repo.bounds(conn, ctx.workspace_id)
    resync = needs_resync(since, oldest, last)
    after = max(0, oldest - 1) if since is None or resync else since
    rows = repo.read_after(conn, ctx.workspace_id, after, limit)
    viewer = Viewer.of(ctx)
    events = [ev.public() for ev in to_events(rows) if viewer.sees(ev.audience)]
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
        by_age = await db.read(repo.newest_seq_before, workspace_id, cutoff)
        upto = max(last - keep, by_age)
        # Never delete what an outgoing webhook still has to deliver (kabar.hooks floors).
        floor = await db.read(retention_floor, workspace_id)
        if floor is not None:
            upto = min(upto, floor)
        if upto <= 0:
            continue
        oldest = await db.read(repo.oldest_seq, workspace_id)
        while oldest is not None and oldest <= upto:
            chunk_end = min(upto, oldest + CLEANUP_CHUNK - 1)
            deleted += await db.transaction(lambda uow, end=chunk_end: repo.delete_upto(uow.conn, workspace_id, end))
            oldest = chunk_end + 1
    return deleted
