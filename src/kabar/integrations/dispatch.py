"""Delivering the event log to webhook endpoints, in order, until each event is acknowledged.

How an event reaches an endpoint:

1. The unit of work that appends events calls ``nudge`` (``kabar.hooks.EVENTS_HOOKS``) before it
   writes them: every active endpoint of the workspace subscribed to one of the types gets a
   ``webhooks.dispatch`` job queued *in the same transaction* (reusing an already queued one).
   The job exists if and only if the events do; nothing depends on a process staying up. (Which
   endpoints a workspace has is memoized per process for a few seconds: ``repository.ACTIVE``.)
2. The job (one at a time per endpoint: serial key ``webhooks:<endpoint id>``) turns events with
   ``seq > endpoint.last_seq`` into ``webhook_deliveries`` rows (unique per endpoint and event, so a
   delivery id is stable) and POSTs the open ones in event order. Each outcome is committed before
   the next POST. A failure stops the queue: the delivery gets ``next_attempt_at`` (exponential
   backoff with jitter, ``KABAR_JOB_BACKOFF_BASE``/``_CAP``) and the job is rescheduled for then;
   later events wait behind it, so the order is kept. An endpoint is never sent the ``webhook.*``
   events about itself (``data.id``): subscribed to "*", its own status changes would feed it.
3. An endpoint failing for ``KABAR_WEBHOOKS_DISABLE_AFTER`` seconds and at least
   ``KABAR_WEBHOOKS_DISABLE_MIN_ATTEMPTS`` tries in a row is disabled; a ``webhook.disabled`` event
   tells the workspace. Activating it again resumes from where it stopped. Each change of an
   endpoint's status the job makes (failing, delivering again, disabled) is a ``webhook.updated``.
4. ``sweep`` (at start-up and every 15 s) queues a job for any active endpoint that is behind
   and has none: events written by a process that never imported this module (a CLI import), or a
   job lost to an operator's hand.

A restart loses nothing: positions, deliveries and jobs are rows. The only way a delivery id is
POSTed twice without a redeliver is a crash between the receiver's 2xx and our commit of it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from kabar import egress, events
from kabar.auth.scope import Scope, system_scope
from kabar.config import Settings
from kabar.db.engine import StorageUnavailable
from kabar.db.types import utcnow
from kabar.db.uow import UnitOfWork
from kabar.hooks import EVENT_RETENTION_FLOORS, EVENTS_HOOKS
from kabar.ids import new_id
from kabar.integrations import delivery
from kabar.integrations import repository as repo
from kabar.integrations.service import changed, event_body, matches, reveal_secret
from kabar.jobs.worker import backoff_seconds

if TYPE_CHECKING:
    from kabar.runtime import Runtime

log = logging.getLogger("kabar.webhooks")

BATCH = 100  # open deliveries handled per read
SCAN = 500  # events looked at per read when filling the queue
RUN_BUDGET = 60.0  # seconds one job delivers before handing over to a fresh job (well inside its lease)
SWEEP_INTERVAL = 15.0


# -- 1. the nudge, inside every unit of work that appends events --------------------------------


def nudge(uow: UnitOfWork) -> None:
    kinds: dict[str, set[tuple[str, Any]]] = {}  # workspace -> {(type, the endpoint a webhook.* event is about)}
    for ev in uow.events:
        subject = ev.data.get("id") if ev.type.startswith(repo.WEBHOOK_FAMILY) else None
        kinds.setdefault(ev.workspace_id, set()).add((ev.type, subject))
    for workspace_id in sorted(kinds):
        scope = None
        for endpoint_id, patterns in repo.ACTIVE.get(uow.conn, workspace_id):
            if any(matches(patterns, type_) and subject != endpoint_id for type_, subject in kinds[workspace_id]):
                scope = scope or system_scope(workspace_id)
                repo.schedule_dispatch(uow, scope, endpoint_id)


def _retention_floor(conn: Any, workspace_id: str) -> int | None:
    return repo.retention_floor(conn, system_scope(workspace_id))


if nudge not in EVENTS_HOOKS:
    EVENTS_HOOKS.append(nudge)
if _retention_floor not in EVENT_RETENTION_FLOORS:
    EVENT_RETENTION_FLOORS.append(_retention_floor)


# -- 2. the dispatcher --------------------------------------------------------------------------


@dataclass(slots=True)
class Work:
    url: str
    secret: bytes
    items: list[Any]  # open deliveries with their event, in event order
    more: bool  # events are left to look at even though no delivery came of this read


def next_work(uow: UnitOfWork, scope: Scope, endpoint_id: str) -> Work | None:
    """The endpoint's next open deliveries, after turning new events into deliveries. An endpoint
    is never sent the events about itself (subscribed to "*", its own status changes would feed
    back into it)."""
    endpoint = repo.endpoint(uow.conn, scope, endpoint_id, lock=True)
    if endpoint is None or not endpoint.active:
        return None
    items = repo.open_deliveries(uow.conn, scope, endpoint_id, BATCH)
    more = False
    if len(items) < BATCH:
        scanned = repo.events_after(uow.conn, scope, endpoint.last_seq, SCAN)
        if scanned and scanned[0].seq > endpoint.last_seq + 1:
            log.error(
                "webhook %s: events %d..%d left the event log before they were delivered (retention)",
                endpoint_id, endpoint.last_seq + 1, scanned[0].seq - 1,
            )
        if scanned:
            wanted = [ev for ev in scanned if matches(endpoint.events, ev.type)]
            if any(ev.type.startswith(repo.WEBHOOK_FAMILY) for ev in wanted):
                about = repo.webhook_event_subjects(uow.conn, scope, endpoint.last_seq, scanned[-1].seq)
                wanted = [ev for ev in wanted if about.get(ev.seq) != endpoint_id]
            rows = [
                {
                    "id": new_id(),
                    "workspace_id": scope.workspace_id,
                    "endpoint_id": endpoint_id,
                    "event_seq": ev.seq,
                    "event_type": ev.type,
                    "status": "pending",
                    "attempts": 0,
                    "created_at": uow.now,
                    "updated_at": uow.now,
                }
                for ev in wanted
            ]
            repo.insert_deliveries(uow.conn, rows)
            repo.update_endpoint(uow.conn, scope, endpoint_id, last_seq=scanned[-1].seq)
            more = len(scanned) == SCAN
            if rows:
                items = repo.open_deliveries(uow.conn, scope, endpoint_id, BATCH)
    return Work(endpoint.url, endpoint.secret, items, more)


def record(uow: UnitOfWork, scope: Scope, endpoint_id: str, item: Any, attempt: delivery.Attempt, settings: Settings) -> bool:
    """Store one attempt's outcome; True when the dispatcher may go on to the next delivery. A
    change of the endpoint's status (failing, active again, disabled) is a ``webhook.updated``."""
    endpoint = repo.endpoint(uow.conn, scope, endpoint_id, lock=True)
    if endpoint is None:
        return False
    attempts = item.attempts + 1
    common = {
        "attempts": attempts,
        "last_status_code": attempt.status_code,
        "last_duration_ms": attempt.duration_ms,
        "last_attempt_at": uow.now,
        "updated_at": uow.now,
    }
    if attempt.ok:
        outcome = {"status": "delivered", "last_error": None, "next_attempt_at": None, "delivered_at": uow.now}
    else:
        next_at = uow.now + timedelta(seconds=backoff_seconds(attempts, settings.job_backoff_base, settings.job_backoff_cap))
        outcome = {"status": "failed", "last_error": attempt.error, "next_attempt_at": next_at}
    if not repo.update_delivery(uow.conn, scope, item.id, unchanged_since=item.updated_at, **outcome, **common):
        # Redelivered while this attempt was in flight: the request to send it again wins over this outcome.
        repo.update_delivery(uow.conn, scope, item.id, last_error=attempt.error, **common)
        return attempt.ok and endpoint.active
    if attempt.ok:
        if endpoint.failing_since is not None:
            repo.update_endpoint(uow.conn, scope, endpoint_id, failing_since=None)
            changed(uow, scope, events.WEBHOOK_UPDATED, endpoint_id)
        return endpoint.active
    failing_since = endpoint.failing_since or uow.now
    failing_for = (uow.now - failing_since).total_seconds()
    if endpoint.active and failing_for >= settings.webhooks_disable_after and attempts >= settings.webhooks_disable_min_attempts:
        reason = f"Failing since {failing_since.isoformat()} ({attempts} attempts); last error: {attempt.error}"[:300]
        repo.update_endpoint(
            uow.conn, scope, endpoint_id, active=False, disabled_at=uow.now, disabled_reason=reason, failing_since=failing_since
        )
        changed(uow, scope, events.WEBHOOK_UPDATED, endpoint_id)
        uow.emit(
            scope.workspace_id,
            events.WEBHOOK_DISABLED,
            {"id": endpoint_id, "url": endpoint.url, "failing_since": failing_since.isoformat(), "disabled_reason": reason},
        )
        log.warning("webhook %s disabled: %s", endpoint_id, reason)
        return False
    if endpoint.failing_since is None:
        repo.update_endpoint(uow.conn, scope, endpoint_id, failing_since=failing_since)
        changed(uow, scope, events.WEBHOOK_UPDATED, endpoint_id)
    repo.schedule_dispatch(uow, scope, endpoint_id, at=next_at, mode="set")
    return False


def expire(uow: UnitOfWork, scope: Scope, delivery_id: str) -> None:
    """The event was pruned from the log before it could be sent: say so, and go on."""
    repo.update_delivery(
        uow.conn, scope, delivery_id, status="expired", last_error="the event left the event log first", updated_at=uow.now
    )


def reschedule(uow: UnitOfWork, scope: Scope, endpoint_id: str, at: Any) -> None:
    repo.schedule_dispatch(uow, scope, endpoint_id, at=at, mode="set")


async def dispatch(runtime: Runtime, workspace_id: str, endpoint_id: str) -> None:
    """Deliver the endpoint's open deliveries in order until done, failing, or out of budget."""
    db, settings = runtime.db, runtime.settings
    scope = system_scope(workspace_id)  # the job acts for Kabar, in the endpoint's workspace
    deadline = time.monotonic() + RUN_BUDGET
    async with egress.client(allow_private=egress.private_allowed(settings)) as http:
        while True:
            work = await db.transaction(next_work, scope, endpoint_id)
            if work is None:
                return
            if not work.items:
                if work.more:
                    continue
                return
            secret = reveal_secret(runtime.cipher, endpoint_id, work.secret)
            for item in work.items:
                now = utcnow()
                if item.next_attempt_at is not None and item.next_attempt_at > now:
                    await db.transaction(reschedule, scope, endpoint_id, item.next_attempt_at)
                    return
                if time.monotonic() > deadline or (runtime.jobs is not None and runtime.jobs.stopping):
                    await db.transaction(reschedule, scope, endpoint_id, now)
                    return
                if item.event_found is None:
                    await db.transaction(expire, scope, item.id)
                    continue
                body = event_body(
                    delivery_id=item.id,
                    type=item.event_type,
                    seq=item.event_seq,
                    workspace_id=workspace_id,
                    created_at=item.event_created_at,
                    data=item.event_data,
                )
                attempt = await delivery.post(
                    http,
                    work.url,
                    secret=secret,
                    event_type=item.event_type,
                    delivery_id=item.id,
                    body=body,
                    timeout=settings.webhooks_timeout,
                )
                if not await db.transaction(record, scope, endpoint_id, item, attempt, settings):
                    return


# -- 4. the sweep -------------------------------------------------------------------------------


def sweep(uow: UnitOfWork) -> int:
    rows = repo.lagging_endpoints(uow.conn)
    for row in rows:
        repo.schedule_dispatch(uow, system_scope(row.workspace_id), row.id)
    return len(rows)


async def _sweep_forever(runtime: Runtime) -> None:
    while True:
        try:
            queued = await runtime.db.transaction(sweep)
            if queued:
                log.info("webhook sweep queued %d dispatch job(s)", queued)
        except StorageUnavailable as exc:
            log.warning("webhook sweep: database unavailable: %s", exc)
        except Exception:
            log.exception("webhook sweep failed")
        await asyncio.sleep(SWEEP_INTERVAL)  # a periodic timer, not a wait for a condition


async def start_sweeper(runtime: Runtime) -> None:
    runtime.extras["webhooks.sweeper"] = asyncio.create_task(_sweep_forever(runtime), name="kabar-webhook-sweep")


async def stop_sweeper(runtime: Runtime) -> None:
    task = runtime.extras.pop("webhooks.sweeper", None)
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
