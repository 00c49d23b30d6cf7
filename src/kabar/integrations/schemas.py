"""Request and response shapes for outgoing webhooks."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
EventPattern = Annotated[str, msgspec.Meta(min_length=1, max_length=60)]
EventList = Annotated[list[EventPattern], msgspec.Meta(min_length=1, max_length=100)]
Description = Annotated[str, msgspec.Meta(max_length=300)]


class WebhookCreate(msgspec.Struct, forbid_unknown_fields=True):
    url: Url
    events: EventList  # event-log types, "<family>.*" (e.g. "note.*") or "*" for all
    active: bool = True
    description: Description | None = None


class WebhookUpdate(msgspec.Struct, forbid_unknown_fields=True):
    url: Url | None = None
    events: EventList | None = None
    # true (re)starts delivery from where it stopped: an endpoint disabled after failing, or paused,
    # gets the events it missed meanwhile (as far as the event log still holds them).
    active: bool | None = None
    description: Description | None = None  # "" clears it


class Webhook(msgspec.Struct):
    id: str
    url: str
    description: str | None
    events: list[str]
    active: bool
    status: str  # active | failing | disabled (by Kabar, after failing too long) | paused (by a person)
    last_seq: int  # event-log position delivery has reached
    failing_since: datetime | None
    disabled_at: datetime | None
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime
    secret: str | None = None  # only in the answers that create or rotate it


class Delivery(msgspec.Struct):
    id: str  # also the X-Kabar-Delivery header and the body's "id": stable per event and endpoint
    webhook_id: str
    event_seq: int
    event_type: str
    # pending: not tried yet, or queued again (redeliver); failed: the last try failed, the next one
    # is at next_attempt_at; delivered; expired: the event left the event log before it could be sent.
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    last_duration_ms: int | None
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime
    updated_at: datetime


class TestResult(msgspec.Struct):
    id: str  # the X-Kabar-Delivery of the test POST
    delivered: bool
    status_code: int | None
    duration_ms: int
    error: str | None
