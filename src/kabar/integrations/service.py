"""Outgoing webhooks: manage endpoints, read and redeliver deliveries, send a test event.

The ``async`` functions are the entry points for HTTP and the web UI: a URL is checked (DNS)
before the unit of work opens, since nothing may wait on the network inside a transaction.
Delivery itself is ``kabar.integrations.dispatch``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import msgspec
from sqlalchemy import Connection

from kabar import egress, events
from kabar.auth.scope import Scope
from kabar.config import Settings
from kabar.crypto import Cipher
from kabar.db.types import utcnow
from kabar.db.uow import UnitOfWork
from kabar.errors import conflict, invalid, not_found
from kabar.http import decode_cursor, encode_cursor
from kabar.ids import new_id, new_token
from kabar.integrations import delivery
from kabar.integrations import repository as repo
from kabar.integrations import schemas as s

if TYPE_CHECKING:
    from kabar.runtime import Runtime

PERMISSION = "webhooks.manage"
MAX_ENDPOINTS = 20  # per workspace: each one is a serial delivery queue
SECRET_PREFIX = "whsec_"
TEST_EVENT = "webhook.test"  # sent by the "send test event" action only; not in the event log
DELIVERY_STATUSES = ("pending", "failed", "delivered", "expired")


# -- subscriptions ------------------------------------------------------------------------------


def matches(patterns: Iterable[str], event_type: str) -> bool:
    """Does a subscription (types, "<family>.*", "*") include ``event_type``?"""
    family = event_type.split(".", 1)[0] + ".*"
    return any(p == "*" or p == event_type or p == family for p in patterns)


def check_patterns(patterns: list[str]) -> list[str]:
    """The subscription, de-duplicated in order; 422 naming every unknown type."""
    known = events.known_types()
    families = {k.split(".", 1)[0] for k in known}
    unknown = [
        p for p in patterns if not (p == "*" or p in known or (p.endswith(".*") and p[:-2] in families))
    ]
    if unknown:
        raise invalid("events", f"unknown event types: {', '.join(unknown)}; known: {', '.join(sorted(known))}, '<family>.*' or '*'")
    return list(dict.fromkeys(patterns))


async def check_url(settings: Settings, url: str) -> str:
    url = url.strip()
    try:
        return await egress.validate_url(url, allow_private=egress.private_allowed(settings))
    except egress.EgressRefused as exc:
        raise invalid("url", str(exc)) from None


# -- shapes and secrets -------------------------------------------------------------------------


def webhook_status(row: Any) -> str:
    if not row.active:
        return "disabled" if row.disabled_at is not None else "paused"
    return "failing" if row.failing_since is not None else "active"


def webhook_out(row: Any, secret: str | None = None) -> s.Webhook:
    return s.Webhook(
        id=row.id,
        url=row.url,
        description=row.description,
        events=list(row.events),
        active=row.active,
        status=webhook_status(row),
        last_seq=row.last_seq,
        failing_since=row.failing_since,
        disabled_at=row.disabled_at,
        disabled_reason=row.disabled_reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
        secret=secret,
    )


def delivery_out(row: Any) -> s.Delivery:
    return s.Delivery(
        id=row.id,
        webhook_id=row.endpoint_id,
        event_seq=row.event_seq,
        event_type=row.event_type,
        status=row.status,
        attempts=row.attempts,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        last_duration_ms=row.last_duration_ms,
        last_attempt_at=row.last_attempt_at,
        next_attempt_at=row.next_attempt_at,
        delivered_at=row.delivered_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _aad(endpoint_id: str) -> bytes:
    return f"webhook-secret:{endpoint_id}".encode()  # a ciphertext only decrypts for its own endpoint


def new_secret(cipher: Cipher, endpoint_id: str) -> tuple[str, bytes]:
    secret = new_token(SECRET_PREFIX, 32)
    return secret, cipher.encrypt(secret.encode(), _aad(endpoint_id))


def reveal_secret(cipher: Cipher, endpoint_id: str, blob: bytes) -> str:
    return cipher.decrypt(bytes(blob), _aad(endpoint_id)).decode()


def _get(conn: Connection, ctx: Scope, webhook_id: str, *, lock: bool = False) -> Any:
    row = repo.endpoint(conn, ctx, webhook_id, lock=lock)
    if row is None:
        raise not_found("Webhook")
    return row


# -- endpoints (async entry points, then their units of work) -----------------------------------


async def create_webhook(runtime: Runtime, ctx: Scope, data: s.WebhookCreate) -> s.Webhook:
    ctx.require(PERMISSION)
    patterns = check_patterns(data.events)
    url = await check_url(runtime.settings, data.url)
    out = await runtime.db.transaction(_create, ctx, url, patterns, data.active, data.description, runtime.cipher)
    repo.ACTIVE.forget(ctx.workspace_id)  # after commit: this process's next writes nudge it at once
    return out


def _create(
    uow: UnitOfWork, ctx: Scope, url: str, patterns: list[str], active: bool, description: str | None, cipher: Cipher
) -> s.Webhook:
    ctx.require(PERMISSION)
    if repo.count_endpoints(uow.conn, ctx) >= MAX_ENDPOINTS:
        raise conflict(f"A workspace has at most {MAX_ENDPOINTS} webhooks", slug="webhook-limit")
    webhook_id = new_id()
    secret, blob = new_secret(cipher, webhook_id)
    repo.insert_endpoint(
        uow.conn,
        {
            "id": webhook_id,
            "workspace_id": ctx.workspace_id,
            "url": url,
            "description": description or None,
            "events": patterns,
            "active": active,
            "secret": blob,
            # Deliver what happens from now on, not the workspace's history.
            "last_seq": repo.workspace_event_seq(uow.conn, ctx),
            "created_at": uow.now,
            "updated_at": uow.now,
        },
    )
    if active:  # an event committing alongside this one is picked up by this job
        repo.schedule_dispatch(uow, ctx, webhook_id, mode="earlier")
    return changed(uow, ctx, events.WEBHOOK_CREATED, webhook_id, secret=secret)


def changed(uow: UnitOfWork, ctx: Scope, kind: str, webhook_id: str, *, secret: str | None = None) -> s.Webhook:
    """The endpoint as the API shows it now, with its event (never the secret) for open settings
    pages; ``secret`` only in what is returned (a new endpoint, a rotated secret)."""
    row = _get(uow.conn, ctx, webhook_id)
    uow.emit(ctx.workspace_id, kind, events.payload(webhook_out(row)))
    return webhook_out(row, secret=secret)


def list_webhooks(conn: Connection, ctx: Scope) -> list[s.Webhook]:
    ctx.require(PERMISSION)
    return [webhook_out(row) for row in repo.endpoints(conn, ctx)]


def get_webhook(conn: Connection, ctx: Scope, webhook_id: str) -> s.Webhook:
    ctx.require(PERMISSION)
    return webhook_out(_get(conn, ctx, webhook_id))


async def update_webhook(runtime: Runtime, ctx: Scope, webhook_id: str, data: s.WebhookUpdate) -> s.Webhook:
    ctx.require(PERMISSION)
    patterns = check_patterns(data.events) if data.events is not None else None
    url = await check_url(runtime.settings, data.url) if data.url is not None else None
    out = await runtime.db.transaction(_update, ctx, webhook_id, data, url, patterns)
    repo.ACTIVE.forget(ctx.workspace_id)
    return out


def _update(uow: UnitOfWork, ctx: Scope, webhook_id: str, data: s.WebhookUpdate, url: str | None, patterns: list[str] | None) -> s.Webhook:
    ctx.require(PERMISSION)
    row = _get(uow.conn, ctx, webhook_id, lock=True)
    values: dict[str, Any] = {"updated_at": uow.now}
    if url is not None:
        values["url"] = url
    if patterns is not None:
        values["events"] = patterns
    if data.description is not None:
        values["description"] = data.description or None
    resumed = data.active is True and not row.active
    if resumed:
        values.update(active=True, disabled_at=None, disabled_reason=None, failing_since=None)
    elif data.active is False:
        values["active"] = False
    repo.update_endpoint(uow.conn, ctx, webhook_id, **values)
    if resumed or (url is not None and url != row.url and row.active):
        # A person fixed something: the delivery waiting out its backoff goes now.
        repo.retry_failed_now(uow.conn, ctx, webhook_id, uow.now)
        repo.schedule_dispatch(uow, ctx, webhook_id, mode="earlier")
    return changed(uow, ctx, events.WEBHOOK_UPDATED, webhook_id)


def delete_webhook(uow: UnitOfWork, ctx: Scope, webhook_id: str) -> None:
    ctx.require(PERMISSION)
    if not repo.delete_endpoint(uow.conn, ctx, webhook_id):
        raise not_found("Webhook")
    uow.emit(ctx.workspace_id, events.WEBHOOK_DELETED, {"id": webhook_id})


def rotate_secret(uow: UnitOfWork, ctx: Scope, webhook_id: str, cipher: Cipher) -> s.Webhook:
    """A new secret, shown once; deliveries from now on are signed with it."""
    ctx.require(PERMISSION)
    _get(uow.conn, ctx, webhook_id, lock=True)
    secret, blob = new_secret(cipher, webhook_id)
    repo.update_endpoint(uow.conn, ctx, webhook_id, secret=blob, updated_at=uow.now)
    return changed(uow, ctx, events.WEBHOOK_UPDATED, webhook_id, secret=secret)


# -- deliveries ---------------------------------------------------------------------------------


def list_deliveries(
    conn: Connection, ctx: Scope, webhook_id: str, *, cursor: str | None, limit: int, status: str | None
) -> dict[str, Any]:
    ctx.require(PERMISSION)
    _get(conn, ctx, webhook_id)
    if status is not None and status not in DELIVERY_STATUSES:
        raise invalid("status", f"must be one of {', '.join(DELIVERY_STATUSES)}")
    after = decode_cursor(cursor, (int,))
    before_seq = after[0] if after else None
    rows = repo.delivery_page(conn, ctx, webhook_id, before_seq=before_seq, status=status, limit=limit + 1)
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1].event_seq) if len(rows) > limit else None
    return {"data": [delivery_out(r) for r in page], "next_cursor": next_cursor}


def get_delivery(conn: Connection, ctx: Scope, webhook_id: str, delivery_id: str) -> s.Delivery:
    ctx.require(PERMISSION)
    _get(conn, ctx, webhook_id)
    row = repo.delivery(conn, ctx, webhook_id, delivery_id)
    if row is None:
        raise not_found("Delivery")
    return delivery_out(row)


def redeliver(uow: UnitOfWork, ctx: Scope, webhook_id: str, delivery_id: str) -> s.Delivery:
    """Queue a delivery to be sent again, now, with the same delivery id (receivers may dedupe on it).

    It goes out in event order: behind an older delivery of the same endpoint that is failing.
    """
    ctx.require(PERMISSION)
    endpoint = _get(uow.conn, ctx, webhook_id, lock=True)
    row = repo.delivery(uow.conn, ctx, webhook_id, delivery_id)
    if row is None:
        raise not_found("Delivery")
    if not endpoint.active:
        raise conflict("This webhook is not active; activate it first (PATCH active=true)", slug="webhook-inactive")
    if not repo.event_exists(uow.conn, ctx, row.event_seq):
        raise conflict("The event is no longer in the event log", slug="event-expired")
    repo.update_delivery(uow.conn, ctx, delivery_id, status="pending", next_attempt_at=uow.now, updated_at=uow.now)
    repo.schedule_dispatch(uow, ctx, webhook_id, mode="earlier")
    return delivery_out(repo.delivery(uow.conn, ctx, webhook_id, delivery_id))


# -- test event ---------------------------------------------------------------------------------


def event_body(*, delivery_id: str, type: str, seq: int | None, workspace_id: str, created_at: Any, data: Any) -> bytes:
    """The JSON every delivery POSTs: ``{id, type, seq, workspace_id, created_at, data}``."""
    return msgspec.json.encode(
        {"id": delivery_id, "type": type, "seq": seq, "workspace_id": workspace_id, "created_at": created_at, "data": data}
    )


async def send_test(runtime: Runtime, ctx: Scope, webhook_id: str) -> s.TestResult:
    """POST a ``webhook.test`` event to the endpoint now (also when paused) and report the outcome.

    It is not an event-log event: ``seq`` is null, it is not retried and not listed in deliveries.
    """
    ctx.require(PERMISSION)
    row = await runtime.db.read(lambda conn: _get(conn, ctx, webhook_id))
    delivery_id = new_id()
    body = event_body(
        delivery_id=delivery_id,
        type=TEST_EVENT,
        seq=None,
        workspace_id=ctx.workspace_id,
        created_at=utcnow(),
        data={"webhook_id": row.id, "message": "A test event from Kabar. Check the signature and answer 2xx."},
    )
    async with egress.client(allow_private=egress.private_allowed(runtime.settings)) as http:
        attempt = await delivery.post(
            http,
            row.url,
            secret=reveal_secret(runtime.cipher, row.id, row.secret),
            event_type=TEST_EVENT,
            delivery_id=delivery_id,
            body=body,
            timeout=runtime.settings.webhooks_timeout,
        )
    return s.TestResult(
        id=delivery_id, delivered=attempt.ok, status_code=attempt.status_code, duration_ms=attempt.duration_ms, error=attempt.error
    )
