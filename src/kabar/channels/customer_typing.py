"""A customer's typing indicator, for providers that report one (WhatsApp Cloud API and Kapso do
not; the fake provider's simulated customers do, as the ``kabar.fake.typing`` webhook event).

It is ephemeral: never stored as a message or in the event log, only published to the staff
connected now who may see that customer (``Hub.publish_ephemeral``), as the same
``{"op": "typing", …}`` message staff typing uses, with ``sender_type: "contact"``. The webhook's
receipt row is still kept (``ignored``), like every delivery. A customer Kabar does not know yet
has no conversation to show it in: their typing is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from kabar.auth.scope import Scope, system_scope
from kabar.channels import repository as repo
from kabar.ingest.schemas import Event, Typing
from kabar.phones import InvalidPhone, from_wa_id


@dataclass(frozen=True, slots=True)
class Signal:
    workspace_id: str
    contact_id: str
    message: dict[str, Any]  # the realtime ``typing`` op


def take(conn: Connection, groups: dict[str, list[Event]]) -> list[Signal]:
    """Remove the typing events from a delivery's per-workspace events; their signals, resolved
    to each customer's conversation."""
    signals: list[Signal] = []
    for workspace_id, events in groups.items():
        typing = [e for e in events if isinstance(e, Typing)]
        if not typing:
            continue
        events[:] = [e for e in events if not isinstance(e, Typing)]
        scope = system_scope(workspace_id)
        for event in typing:
            found = _conversation_of(conn, scope, event.wa_id)
            if found is None:
                continue
            contact_id, conversation_id = found
            message = {"op": "typing", "conversation_id": conversation_id, "contact_id": contact_id,
                       "sender_type": "contact", "state": event.state}
            signals.append(Signal(workspace_id, contact_id, message))
    return signals


async def publish(hub: Any, signals: list[Signal]) -> None:
    for signal in signals:
        await hub.publish_ephemeral(signal.workspace_id, signal.message, contact_id=signal.contact_id)


def _conversation_of(conn: Connection, scope: Scope, wa_id: str) -> tuple[str, str] | None:
    try:
        phone = from_wa_id(wa_id)
    except InvalidPhone:
        return None
    row = repo.conversation_of_phone(conn, scope, phone)
    return (row.id, row.conversation_id) if row is not None else None
