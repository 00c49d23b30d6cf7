"""Channel (WhatsApp connection) shapes. Secrets go in, never out: the read shape only says
whether each one is set."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

Provider = Literal["kapso", "meta", "fake"]
SECRET_FIELDS: tuple[str, ...] = ("api_key", "webhook_secret", "app_secret", "verify_token")

Secret = Annotated[str, msgspec.Meta(max_length=2000)]


class ChannelIn(msgspec.Struct, forbid_unknown_fields=True):
    """PUT body. A secret left out keeps its stored value; ``""`` clears it."""

    provider: Provider
    phone_number_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^\S+$")]
    display_phone_number: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    api_key: Secret | None = None  # Kapso project API key, or Meta access token
    webhook_secret: Secret | None = None  # Kapso webhook secret (signs POST /webhooks/kapso)
    app_secret: Secret | None = None  # Meta app secret (signs POST /webhooks/meta)
    verify_token: Secret | None = None  # Meta GET /webhooks/meta handshake
    api_base_url: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class ChannelOut(msgspec.Struct):
    provider: str
    phone_number_id: str
    display_phone_number: str | None
    api_base_url: str  # the effective one (the provider's default when none was set)
    has_api_key: bool
    has_webhook_secret: bool
    has_app_secret: bool
    has_verify_token: bool
    webhook_path: str  # where the provider must post: /webhooks/kapso or /webhooks/meta
    created_at: datetime
    updated_at: datetime


class ChannelTestIn(msgspec.Struct, forbid_unknown_fields=True):
    """``POST …/channel/test``: send one text to ``to`` through the configured provider."""

    to: Annotated[str, msgspec.Meta(max_length=64)]
    text: Annotated[str, msgspec.Meta(max_length=4096)] | None = None  # WhatsApp's text limit


class ChannelTestOut(msgspec.Struct):
    ok: bool
    to: str  # the recipient, as E.164
    provider_message_id: str
    message_id: str | None  # the message as recorded in the recipient's conversation
    conversation_id: str | None
