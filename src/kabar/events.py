"""Event types of the event log, and the helper that turns a resource into an event payload.

Payload = the resource as the API shows it (``contact_out``, ``conversation_out``, ``message_out``
…), so realtime clients and outgoing-webhook receivers see exactly what a GET returns.
"""

from __future__ import annotations

from typing import Any

import msgspec

CONTACT_CREATED = "contact.created"
CONTACT_UPDATED = "contact.updated"
CONTACT_DELETED = "contact.deleted"
CONTACT_MERGED = "contact.merged"
NOTE_CREATED = "note.created"
NOTE_UPDATED = "note.updated"
NOTE_DELETED = "note.deleted"
CONVERSATION_CREATED = "conversation.created"
CONVERSATION_UPDATED = "conversation.updated"
CONVERSATION_DELETED = "conversation.deleted"  # folded into another by a contact merge
MESSAGE_CREATED = "message.created"
MESSAGE_UPDATED = "message.updated"
UPLOAD_CREATED = "upload.created"
ARI_STATE_CHANGED = "ari.state_changed"
ARI_HANDOFF = "ari.handoff"
APPOINTMENT_CREATED = "appointment.created"
APPOINTMENT_UPDATED = "appointment.updated"
# Written by kabar.workspaces.service (string literals there).
WORKSPACE_CREATED = "workspace.created"
WORKSPACE_UPDATED = "workspace.updated"
MEMBER_ADDED = "member.added"
MEMBER_UPDATED = "member.updated"
MEMBER_REMOVED = "member.removed"
INVITATION_CREATED = "invitation.created"
API_KEY_CREATED = "api_key.created"
API_KEY_REVOKED = "api_key.revoked"
WEBHOOK_DISABLED = "webhook.disabled"  # an outgoing-webhook endpoint failed too long (kabar.integrations)


def known_types() -> frozenset[str]:
    """Every event type named in this module (what outgoing webhooks may subscribe to)."""
    return frozenset(v for k, v in globals().items() if k.isupper() and isinstance(v, str) and "." in v)


def payload(resource: Any) -> dict[str, Any]:
    """A msgspec struct (or dict) as plain JSON-ready builtins (datetimes as RFC 3339 strings)."""
    return msgspec.to_builtins(resource)
