"""Event types of the event log, and the helper that turns a resource into an event payload.

Payload = the resource as the API shows it (``contact_out``, ``conversation_out``, ``message_out``
…), so realtime clients and outgoing-webhook receivers see exactly what a GET returns.
"""

from __future__ import annotations

from enum import StrEnum
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
WEBHOOK_CREATED = "webhook.created"  # outgoing-webhook endpoints (kabar.integrations): payload without the secret
WEBHOOK_UPDATED = "webhook.updated"
WEBHOOK_DELETED = "webhook.deleted"
INVITATION_UPDATED = "invitation.updated"  # accepted or revoked
CHANNEL_UPDATED = "channel.updated"  # kabar.channels.service
WORKSPACE_SEEDED = "workspace.seeded"  # kabar.demo
# ARI settings (kabar.ari.service): "<family>.created|updated|deleted" for the small tables.
ARI_CONFIG_UPDATED = "ari.config_updated"
ARI_SCORING_UPDATED = "ari.scoring_updated"
ARI_SETTINGS_FAMILIES = ("ari.flow_stage", "ari.knowledge", "ari.slot")


class Audience(StrEnum):
    """Who receives an event on the realtime feeds (WebSocket, SSE, polling)."""

    MANAGERS = "managers"  # owners and admins: settings, people, invitations, keys, channel, webhooks
    CONTACT = "contact"  # whoever may see the event's contact (kabar.auth.visibility); emit with contact_id
    AUTHOR = "author"  # the person named in the payload's ``created_by``, and whoever sees every customer
    EVERYONE = "everyone"  # every reader of the workspace's feed (nothing private in the payload)


# Every event type and its audience: the one place that decides it. A type missing here reaches
# owners and admins only (``audience_of``), so a new feature's events cannot leak to members.
AUDIENCE: dict[str, Audience] = {
    CONTACT_CREATED: Audience.CONTACT,
    CONTACT_UPDATED: Audience.CONTACT,
    CONTACT_DELETED: Audience.CONTACT,
    CONTACT_MERGED: Audience.CONTACT,
    NOTE_CREATED: Audience.CONTACT,
    NOTE_UPDATED: Audience.CONTACT,
    NOTE_DELETED: Audience.CONTACT,
    CONVERSATION_CREATED: Audience.CONTACT,
    CONVERSATION_UPDATED: Audience.CONTACT,
    CONVERSATION_DELETED: Audience.CONTACT,
    MESSAGE_CREATED: Audience.CONTACT,
    MESSAGE_UPDATED: Audience.CONTACT,
    UPLOAD_CREATED: Audience.AUTHOR,  # not sent yet: its uploader's (sent, it follows its conversation)
    ARI_STATE_CHANGED: Audience.CONTACT,
    ARI_HANDOFF: Audience.CONTACT,
    APPOINTMENT_CREATED: Audience.CONTACT,
    APPOINTMENT_UPDATED: Audience.CONTACT,
    MEMBER_ADDED: Audience.EVERYONE,  # {user_id, role}: no email
    MEMBER_UPDATED: Audience.EVERYONE,
    MEMBER_REMOVED: Audience.EVERYONE,
    WORKSPACE_CREATED: Audience.MANAGERS,
    WORKSPACE_UPDATED: Audience.MANAGERS,  # carries the settings
    WORKSPACE_SEEDED: Audience.MANAGERS,
    INVITATION_CREATED: Audience.MANAGERS,  # carries the invitee's email
    API_KEY_CREATED: Audience.MANAGERS,
    API_KEY_REVOKED: Audience.MANAGERS,
    WEBHOOK_DISABLED: Audience.MANAGERS,
    WEBHOOK_CREATED: Audience.MANAGERS,
    WEBHOOK_UPDATED: Audience.MANAGERS,
    WEBHOOK_DELETED: Audience.MANAGERS,
    INVITATION_UPDATED: Audience.MANAGERS,
    CHANNEL_UPDATED: Audience.MANAGERS,
    ARI_CONFIG_UPDATED: Audience.MANAGERS,
    ARI_SCORING_UPDATED: Audience.MANAGERS,
    **{f"{family}.{verb}": Audience.MANAGERS for family in ARI_SETTINGS_FAMILIES for verb in ("created", "updated", "deleted")},
}


# Managers-only types whose other readers still receive the event, reduced to these fields (the
# rest is for owners and admins): members' pages show the workspace's name and owner.
MEMBER_VIEW: dict[str, tuple[str, ...]] = {
    WORKSPACE_UPDATED: ("id", "name", "slug", "owner_id", "timezone", "created_at"),
}


def audience_of(event_type: str) -> Audience:
    """The event type's audience; owners and admins only for a type not in ``AUDIENCE``."""
    return AUDIENCE.get(event_type, Audience.MANAGERS)


def known_types() -> frozenset[str]:
    """Every event type Kabar writes (what outgoing webhooks may subscribe to)."""
    return frozenset(AUDIENCE)


def reassigned(data: dict[str, Any], previous_assignee_id: str | None) -> dict[str, Any]:
    """The payload of a ``contact.updated`` / ``conversation.updated`` whose assignee changed:
    it also reaches the previous assignee, whose open inbox then drops the customer. ``None`` is
    kept: the customer was in the shared queue, so every member saw it and must learn it left."""
    if previous_assignee_id != data.get("assignee_id"):
        return {**data, "previous_assignee_id": previous_assignee_id}
    return data


def reassignment_notice(data: dict[str, Any]) -> dict[str, Any]:
    """What a reassignment's event says to those who saw the customer before and no longer may:
    which conversation or contact, and its new assignee (enough for an open inbox to drop it)."""
    notice = {key: data[key] for key in ("id", "contact_id", "assignee_id", "previous_assignee_id") if key in data}
    if isinstance(data.get("contact"), dict):
        notice["contact"] = {"id": data["contact"].get("id")}
    return notice


def payload(resource: Any) -> dict[str, Any]:
    """A msgspec struct (or dict) as plain JSON-ready builtins (datetimes as RFC 3339 strings)."""
    return msgspec.to_builtins(resource)
