"""Extension points between domains, so that ingest need not import ARI (and so on).

Each hook runs inside the caller's unit of work; whatever it writes or enqueues commits (or rolls
back) with the change that triggered it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Called for every newly stored inbound message: ``hook(uow, message_row, conversation_row, contact_row)``.
# ARI registers here to enqueue its reply job.
INBOUND_MESSAGE_HOOKS: list[Callable[[Any, Any, Any, Any], None]] = []


def on_inbound_message(uow: Any, message: Any, conversation: Any, contact: Any) -> None:
    for hook in INBOUND_MESSAGE_HOOKS:
        hook(uow, message, conversation, contact)


# Called once per unit of work that appends events, inside it, right after they are written (seqs
# assigned) and before its jobs are: ``hook(uow)``. Outgoing webhooks register here to enqueue their
# dispatch job in the same transaction as the events it will deliver.
EVENTS_HOOKS: list[Callable[[Any], None]] = []

# Lower bounds for event-log retention: ``floor(conn, workspace_id) -> int | None``; the cleanup must
# keep every event with a seq above the smallest floor (outgoing webhooks still to deliver them).
EVENT_RETENTION_FLOORS: list[Callable[[Any, str], int | None]] = []


def retention_floor(conn: Any, workspace_id: str) -> int | None:
    floors = [f for hook in EVENT_RETENTION_FLOORS if (f := hook(conn, workspace_id)) is not None]
    return min(floors) if floors else None
