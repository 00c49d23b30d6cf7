"""Normalized inbound events: what every provider payload becomes before anything is written.

Adapters (``kabar.channels.kapso.webhook``, ``kabar.channels.meta.webhook``) turn raw bodies into
a list of these; ``kabar.ingest.service`` applies them. They are plain data (msgspec structs, a
tagged union), so a parked event can sit in a job payload and come back unchanged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class Media(msgspec.Struct, omit_defaults=True):
    provider_media_id: str | None = None
    url: str | None = None  # Meta's 5-minute lookaside URL, or Kapso's media_url
    mime_type: str | None = None
    sha256: str | None = None
    filename: str | None = None
    caption: str | None = None
    size: int | None = None
    voice: bool | None = None  # audio recorded as a voice note
    animated: bool | None = None  # sticker


class Content(msgspec.Struct, omit_defaults=True):
    """What a message says, for every WhatsApp type (text, media, location, contacts, buttons…)."""

    type: str
    text: str | None = None
    media: Media | None = None
    metadata: dict[str, Any] = {}


class InboundMessage(msgspec.Struct, tag="message", omit_defaults=True):
    """A chat bubble. ``direction="outbound"`` is an echo of what the business sent elsewhere
    (WhatsApp Business App, Kapso inbox, history import)."""

    phone_number_id: str
    provider_message_id: str
    # The customer (sender of an inbound message, recipient of an echo): their phone number, their
    # business-scoped user id (BSUID), or both; never neither (such a payload is ``Ignored``).
    wa_id: str | None
    content: Content
    direction: str = "inbound"
    origin: str | None = None  # Kapso: cloud_api | business_app | history_sync
    profile_name: str | None = None
    user_id: str | None = None  # business-scoped user id (BSUID), when Meta sends one
    username: str | None = None  # WhatsApp username (``profile.username``), when the customer has one
    timestamp: datetime | None = None
    reply_to: str | None = None  # provider id of the quoted message
    status: str | None = None  # an echo's delivery status, when the payload carries one


class StatusUpdate(msgspec.Struct, tag="status", omit_defaults=True):
    phone_number_id: str
    provider_message_id: str
    status: str  # sent | delivered | read | played | failed
    timestamp: datetime | None = None
    error: dict[str, Any] | None = None  # {code, title, details}
    recipient: str | None = None
    callback: str | None = None  # biz_opaque_callback_data: our message id, set when sending
    # The recipient's business-scoped user id and username, when the status carries them (Meta
    # adds ``contacts[]`` to sent/delivered/read statuses): learnt for the message's contact.
    user_id: str | None = None
    username: str | None = None


class Reaction(msgspec.Struct, tag="reaction", omit_defaults=True):
    phone_number_id: str
    provider_message_id: str  # the reaction's own id
    target: str  # provider id of the message reacted to
    wa_id: str | None
    emoji: str | None = None  # None or "" removes the reaction
    from_business: bool = False
    timestamp: datetime | None = None


class Edit(msgspec.Struct, tag="edit", omit_defaults=True):
    phone_number_id: str
    provider_message_id: str
    target: str
    wa_id: str | None
    content: Content
    timestamp: datetime | None = None


class Revoke(msgspec.Struct, tag="revoke", omit_defaults=True):
    phone_number_id: str
    provider_message_id: str
    target: str
    wa_id: str | None
    timestamp: datetime | None = None


class NumberChanged(msgspec.Struct, tag="number_changed", omit_defaults=True):
    """The customer moved to a new WhatsApp number (Meta ``system``/``user_changed_number``)."""

    phone_number_id: str
    old_wa_id: str
    new_wa_id: str
    timestamp: datetime | None = None
    new_user_id: str | None = None  # a number change regenerates the business-scoped user id


class IdentityChanged(msgspec.Struct, tag="identity_changed", omit_defaults=True):
    """The customer's business-scoped user id changed (Meta ``system``/``user_changed_user_id``,
    Kapso ``whatsapp.contact.identity_changed``). The contact is found by its old id, or else by
    its phone."""

    phone_number_id: str
    new_user_id: str
    old_user_id: str | None = None
    wa_id: str | None = None
    timestamp: datetime | None = None


class PreferenceChanged(msgspec.Struct, tag="preference", omit_defaults=True):
    """The customer stopped or resumed marketing messages."""

    phone_number_id: str
    wa_id: str | None  # the customer's phone, or (username users) only their ``user_id``
    category: str
    value: str
    timestamp: datetime | None = None
    user_id: str | None = None


class Typing(msgspec.Struct, tag="typing", omit_defaults=True):
    """The customer is typing (``state="typing"``) or stopped (``"paused"``): ephemeral, never
    stored (``kabar.channels.customer_typing``). Only the fake provider reports it."""

    phone_number_id: str
    wa_id: str
    state: str = "typing"


class Ignored(msgspec.Struct, tag="ignored", omit_defaults=True):
    """Something Kabar acknowledges but does not use (kept in the stored receipt)."""

    kind: str
    reason: str = ""
    phone_number_id: str | None = None


Event = (
    InboundMessage | StatusUpdate | Reaction | Edit | Revoke | NumberChanged | IdentityChanged | PreferenceChanged | Typing | Ignored
)


class UnsupportedPayload(ValueError):
    """A payload Kabar cannot read (not JSON, an old payload version): stored as a failed receipt."""
