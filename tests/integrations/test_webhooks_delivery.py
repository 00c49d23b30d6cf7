"""Outgoing webhooks delivered to a real receiver on 127.0.0.1: signed, complete, ordered, once."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import delete, select

from kabar.db import tables as t
from kabar.hooks import retention_floor
from tests.helpers import assert_problem
from tests.integrations.conftest import emit, wait_for
from tests.integrations.receiver import Receiver


async def subscribe(tenant: Any, url: str, events: list[str]) -> dict[str, Any]:
    response = await tenant.client.post(f"{tenant.base}/webhooks", json={"url": url, "events": events}, headers=tenant.owner.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def deliveries(tenant: Any, webhook_id: str, **params: Any) -> list[dict[str, Any]]:
    response = await tenant.client.get(f"{tenant.base}/webhooks/{webhook_id}/deliveries", params=params, headers=tenant.owner.headers)
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def all_delivered(tenant: Any, webhook_id: str, count: int) -> list[dict[str, Any]] | None:
    """The deliveries once ``count`` are recorded as delivered (a receiver answers before Kabar commits)."""
    listed = await deliveries(tenant, webhook_id)
    return listed if len(listed) == count and all(d["status"] == "delivered" for d in listed) else None


async def dispatcher_idle(client: Any, webhook_id: str) -> None:
    """Wait until the endpoint has no dispatch job: what follows must be driven by new events."""

    def busy(conn: Any) -> bool:
        stmt = select(t.jobs.c.id).where(t.jobs.c.serial_key == f"webhooks:{webhook_id}", t.jobs.c.status.in_(("queued", "running")))
        return conn.execute(stmt).first() is not None

    await wait_for(lambda: _not(client.runtime.db.read(busy)), what="the dispatcher to be idle")


async def _not(value: Any) -> bool:
    return not await value


def mine(receiver: Any, workspace_id: str) -> list[Any]:
    return [r for r in receiver.accepted() if r.json["workspace_id"] == workspace_id]


async def test_every_subscribed_event_arrives_once_signed(client, jobs, tenant, other_tenant, receiver):
    hook = await subscribe(tenant, receiver.url, ["contact.created", "workspace.updated", "member.*"])
    await dispatcher_idle(client, hook["id"])
    await emit(client.runtime, tenant.ws, "contact.created", "message.created", "contact.created")
    await emit(client.runtime, other_tenant.ws, "contact.created")  # another workspace: never ours
    response = await client.patch(tenant.base, json={"name": "Toko Kabar"}, headers=tenant.owner.headers)
    assert response.status_code == 200
    await tenant.add_user("member")  # member.added
    await tenant.api_key()  # api_key.created: not subscribed
    await emit(client.runtime, tenant.ws, "contact.created")  # the last one: everything before it is settled

    got = await wait_for(lambda: len(mine(receiver, tenant.ws)) >= 5 and mine(receiver, tenant.ws), what="5 deliveries")
    types = [r.json["type"] for r in got]
    assert types == ["contact.created", "contact.created", "workspace.updated", "member.added", "contact.created"]
    for r in got:
        body = r.json
        assert r.signature_ok(hook["secret"]), "signature must verify with the secret the API returned"
        assert not r.signature_ok("whsec_wrong")
        assert r.headers["x-kabar-event"] == body["type"]
        assert r.headers["x-kabar-delivery"] == body["id"]
        assert r.headers["content-type"] == "application/json"
        assert abs(int(r.headers["x-kabar-timestamp"]) - __import__("time").time()) < 120
        assert set(body) == {"id", "type", "seq", "workspace_id", "created_at", "data"}
        assert body["workspace_id"] == tenant.ws and body["created_at"].endswith("Z")
    assert [r.json["data"]["n"] for r in got if r.json["type"] == "contact.created"] == [0, 2, 0]
    assert got[0].json["data"]["text"] == "Halo, apa kabar? 🙂"
    assert got[2].json["data"]["name"] == "Toko Kabar"
    seqs = [r.json["seq"] for r in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert len({r.delivery_id for r in got}) == 5
    assert len(receiver.snapshot()) == 5, "nothing unsubscribed, nothing from the other workspace, nothing twice"

    listed = await wait_for(lambda: all_delivered(tenant, hook["id"], 5), what="the outcomes to be recorded")
    assert [d["id"] for d in listed] == [r.delivery_id for r in reversed(got)]
    for d in listed:
        assert d["status"] == "delivered" and d["attempts"] == 1 and d["last_status_code"] == 200
        assert d["last_error"] is None and d["last_duration_ms"] is not None and d["delivered_at"]
    webhook = (await client.get(f"{tenant.base}/webhooks/{hook['id']}", headers=tenant.owner.headers)).json()
    assert webhook["status"] == "active" and webhook["last_seq"] >= got[-1].json["seq"]


async def test_failing_receiver_gets_everything_in_order_after_recovering(client, jobs, tenant, receiver):
    receiver.status = 500
    hook = await subscribe(tenant, receiver.url, ["contact.created", "contact.updated", "message.created"])
    for n in range(3):
        await emit(client.runtime, tenant.ws, f"contact.{'created' if n % 2 == 0 else 'updated'}", "message.created")

    await wait_for(lambda: len(receiver.refused()) >= 4, what="retries of the failing delivery")
    head = receiver.refused()[0]
    assert {r.delivery_id for r in receiver.refused()} == {head.delivery_id}, "later events wait behind the failing one"
    first = (await deliveries(tenant, hook["id"], status="failed"))[0]
    assert first["id"] == head.delivery_id and first["attempts"] >= 1 and first["last_status_code"] == 500
    assert first["last_error"].startswith("HTTP 500") and first["next_attempt_at"]
    webhook = (await client.get(f"{tenant.base}/webhooks/{hook['id']}", headers=tenant.owner.headers)).json()
    assert webhook["status"] == "failing" and webhook["failing_since"]
    floor = await client.runtime.db.read(retention_floor, tenant.ws)
    assert floor == head.json["seq"] - 1, "event-log retention must keep what the endpoint still owes"

    receiver.status = 200
    got = await wait_for(lambda: len(receiver.accepted()) >= 6 and receiver.accepted(), what="all 6 events")
    seqs = [r.json["seq"] for r in got]
    assert seqs == sorted(seqs) and len(got) == 6
    assert len({r.delivery_id for r in got}) == 6, "no delivery id accepted twice"
    assert got[0].delivery_id == head.delivery_id
    assert all(r.signature_ok(hook["secret"]) for r in got)
    webhook = await wait_for(
        lambda: _webhook_if(client, tenant, hook["id"], lambda w: w["failing_since"] is None), what="failing_since cleared"
    )
    assert webhook["status"] == "active"
    listed = await wait_for(lambda: all_delivered(tenant, hook["id"], 6), what="6 recorded deliveries")
    assert listed[-1]["attempts"] >= 2


def _about(received: list[Any], webhook_id: str) -> list[dict[str, Any]]:
    """The ``webhook.*`` events among ``received`` that are about endpoint ``webhook_id``."""
    return [r.json for r in received if r.json["type"].startswith("webhook.") and r.json["data"]["id"] == webhook_id]


async def test_an_endpoint_is_never_sent_events_about_itself(client, jobs, tenant, receiver):
    """Subscribed to "*", an endpoint would otherwise receive its own webhook.created and every
    change of its own status (failing, active again): a feedback loop. Another endpoint subscribed
    to webhook.* is told of them, and of the status changes the delivery job makes."""
    down = Receiver(status=500).start()
    try:
        star = await subscribe(tenant, down.url, ["*"])
        watcher = await subscribe(tenant, receiver.url, ["webhook.*"])
        await emit(client.runtime, tenant.ws, "contact.created")

        def star_status(status: str) -> Any:
            return lambda: [e for e in _about(receiver.accepted(), star["id"]) if e["data"]["status"] == status]

        await wait_for(star_status("failing"), what="webhook.updated: the '*' endpoint is failing")
        down.status = 200
        await wait_for(star_status("active"), what="webhook.updated: the '*' endpoint delivers again")
        headers = tenant.owner.headers
        for hook in (watcher, star):  # the last change: everything before it is settled once it arrives
            response = await client.patch(f"{tenant.base}/webhooks/{hook['id']}", json={"description": "CRM"}, headers=headers)
            assert response.status_code == 200, response.text
        await emit(client.runtime, tenant.ws, "contact.created")

        to_star = await wait_for(lambda: len(down.accepted()) >= 4 and down.accepted(), what="the '*' endpoint's events")
        told = await wait_for(
            lambda: (got := _about(receiver.accepted(), star["id"])) and got[-1]["data"]["description"] == "CRM" and got,
            what="the watcher told of the '*' endpoint's change",
        )
    finally:
        down.stop()
    assert [(r.json["type"], r.json["data"].get("id")) for r in to_star] == [
        ("webhook.created", watcher["id"]),
        ("contact.created", None),
        ("webhook.updated", watcher["id"]),
        ("contact.created", None),
    ], "the '*' endpoint gets everything but what is about itself"
    assert not _about(down.snapshot(), star["id"])
    assert [(e["type"], e["data"]["status"]) for e in told] == [
        ("webhook.updated", "failing"),
        ("webhook.updated", "active"),
        ("webhook.updated", "active"),
    ]
    assert not _about(receiver.snapshot(), watcher["id"]), "nor the watcher about itself"
    assert all(r.signature_ok(watcher["secret"]) for r in receiver.snapshot())


async def _webhook_if(client: Any, tenant: Any, webhook_id: str, predicate: Any) -> dict[str, Any] | None:
    body = (await client.get(f"{tenant.base}/webhooks/{webhook_id}", headers=tenant.owner.headers)).json()
    return body if predicate(body) else None


async def test_redeliver_sends_the_same_delivery_again(client, jobs, tenant, other_tenant, receiver):
    hook = await subscribe(tenant, receiver.url, ["contact.created"])
    await emit(client.runtime, tenant.ws, "contact.created")
    first = (await wait_for(lambda: receiver.accepted(), what="first delivery"))[0]
    url = f"{tenant.base}/webhooks/{hook['id']}/deliveries/{first.delivery_id}/redeliver"

    response = await client.post(url, headers=tenant.owner.headers)
    assert response.status_code == 202, response.text
    assert response.json()["id"] == first.delivery_id and response.json()["status"] == "pending"
    again = await wait_for(lambda: len(receiver.accepted()) >= 2 and receiver.accepted(), what="redelivery")
    assert again[1].delivery_id == first.delivery_id and again[1].body == first.body
    assert again[1].signature_ok(hook["secret"])
    one = (await client.get(f"{tenant.base}/webhooks/{hook['id']}/deliveries/{first.delivery_id}", headers=tenant.owner.headers)).json()
    await wait_for(
        lambda: _delivery_if(client, tenant, hook["id"], first.delivery_id, lambda d: d["status"] == "delivered" and d["attempts"] == 2),
        what="delivery recorded twice",
    )
    assert one["event_type"] == "contact.created"

    assert_problem(await client.post(url.replace(first.delivery_id, "nope"), headers=tenant.owner.headers), 404)
    assert_problem(await client.post(url, headers=other_tenant.owner.headers), 404)
    await client.patch(f"{tenant.base}/webhooks/{hook['id']}", json={"active": False}, headers=tenant.owner.headers)
    assert_problem(await client.post(url, headers=tenant.owner.headers), 409, "webhook-inactive")


async def test_redeliver_while_the_first_attempt_is_in_flight_is_not_lost(client, jobs, tenant, receiver):
    """The receiver holds the first POST until the redeliver has committed: the redelivery still goes."""
    hook = await subscribe(tenant, receiver.url, ["contact.created"])
    receiver.hold = threading.Event()
    try:
        await emit(client.runtime, tenant.ws, "contact.created")
        first = (await wait_for(lambda: receiver.snapshot(), what="the first POST"))[0]
        url = f"{tenant.base}/webhooks/{hook['id']}/deliveries/{first.delivery_id}/redeliver"
        response = await client.post(url, headers=tenant.owner.headers)
        assert response.status_code == 202, response.text
    finally:
        receiver.hold.set()
    again = await wait_for(lambda: len(receiver.accepted()) >= 2 and receiver.accepted(), what="redelivery")
    assert again[1].delivery_id == first.delivery_id and again[1].body == first.body
    await wait_for(
        lambda: _delivery_if(client, tenant, hook["id"], first.delivery_id, lambda d: d["status"] == "delivered" and d["attempts"] == 2),
        what="both attempts recorded, the last one delivered",
    )


async def _delivery_if(client: Any, tenant: Any, webhook_id: str, delivery_id: str, predicate: Any) -> dict[str, Any] | None:
    response = await client.get(f"{tenant.base}/webhooks/{webhook_id}/deliveries/{delivery_id}", headers=tenant.owner.headers)
    body = response.json()
    return body if predicate(body) else None


async def test_send_test_event(client, tenant, receiver):
    hook = await subscribe(tenant, receiver.url, ["contact.created"])
    url = f"{tenant.base}/webhooks/{hook['id']}/test"
    response = await client.post(url, headers=tenant.owner.headers)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["delivered"] is True and result["status_code"] == 200 and result["error"] is None
    (got,) = receiver.snapshot()
    assert got.json["type"] == "webhook.test" and got.json["seq"] is None and got.json["workspace_id"] == tenant.ws
    assert got.delivery_id == result["id"] and got.signature_ok(hook["secret"])
    assert got.headers["x-kabar-event"] == "webhook.test"

    receiver.status = 503
    failed = (await client.post(url, headers=tenant.owner.headers)).json()
    assert failed["delivered"] is False and failed["status_code"] == 503 and failed["error"].startswith("HTTP 503")
    assert await deliveries(tenant, hook["id"]) == [], "test events are not event-log deliveries"


async def test_deliveries_list_pages_newest_first(client, jobs, tenant, receiver):
    hook = await subscribe(tenant, receiver.url, ["note.*"])
    await emit(client.runtime, tenant.ws, "note.created", "note.updated", "note.deleted", "note.created", "note.created")
    await wait_for(lambda: len(receiver.accepted()) >= 5, what="5 deliveries")
    seen: list[dict[str, Any]] = []
    cursor = None
    for _ in range(5):
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = await client.get(f"{tenant.base}/webhooks/{hook['id']}/deliveries", params=params, headers=tenant.owner.headers)
        page = response.json()
        seen += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 5 and len({d["id"] for d in seen}) == 5
    assert [d["event_seq"] for d in seen] == sorted((d["event_seq"] for d in seen), reverse=True)
    bad = await client.get(f"{tenant.base}/webhooks/{hook['id']}/deliveries", params={"status": "weird"}, headers=tenant.owner.headers)
    assert_problem(bad, 422)


async def test_events_before_the_webhook_existed_are_not_sent(client, jobs, tenant, receiver):
    await emit(client.runtime, tenant.ws, "contact.created", "contact.created")
    hook = await subscribe(tenant, receiver.url, ["contact.created"])
    await emit(client.runtime, tenant.ws, "contact.updated", "contact.created")
    got = await wait_for(lambda: receiver.accepted(), what="the new event")
    assert len(receiver.snapshot()) == 1 and got[0].json["data"]["n"] == 1
    assert len(await deliveries(tenant, hook["id"])) == 1


async def test_dispatch_job_commits_with_its_events(client, tenant, receiver):
    """The job is written in the events' own transaction: one per endpoint, gone if they roll back."""
    hook = await subscribe(tenant, receiver.url, ["contact.created"])
    key = f"webhooks:{hook['id']}"
    seen: list[int] = []

    def write_then_fail(uow: Any) -> None:
        uow.conn.execute(delete(t.jobs).where(t.jobs.c.serial_key == key, t.jobs.c.status == "queued"))
        for n in range(3):
            uow.emit(tenant.ws, "contact.created", {"n": n, "marker": "rolled-back"})
        uow.flush()  # what commit does first: the hook queues (or reuses) the job in this transaction
        seen.append(
            len(uow.conn.execute(select(t.jobs.c.id).where(t.jobs.c.serial_key == key, t.jobs.c.status == "queued")).all())
        )
        raise RuntimeError("the write fails after its events were appended")

    try:
        await client.runtime.db.transaction(write_then_fail)
    except RuntimeError:
        pass
    assert seen == [1], "the events' own transaction queued exactly one dispatch job for the endpoint"
    stored = await client.runtime.db.read(
        lambda conn: conn.execute(select(t.events.c.seq).where(t.events.c.workspace_id == tenant.ws, t.events.c.type == "contact.created")).all()
    )
    assert stored == []


async def test_concurrent_writers_each_event_once_in_order(client, jobs, tenant, receiver):
    """Many units of work at once (PostgreSQL interleaves them), some holding the workspace row from
    their first statement (PATCH workspace): no deadlock, every event once, in seq order."""
    import asyncio

    hook = await subscribe(tenant, receiver.url, ["contact.created", "workspace.updated"])
    writes = [emit(client.runtime, tenant.ws, "contact.created") for _ in range(30)]
    writes += [
        client.patch(tenant.base, json={"name": f"Toko {n}"}, headers=tenant.owner.headers) for n in range(10)
    ]
    results = await asyncio.gather(*writes)
    assert all(r is None or r.status_code == 200 for r in results)
    got = await wait_for(lambda: len(receiver.accepted()) >= 40 and receiver.accepted(), timeout=60, what="40 deliveries")
    seqs = [r.json["seq"] for r in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == 40
    assert len({r.delivery_id for r in got}) == 40
    await wait_for(lambda: all_delivered(tenant, hook["id"], 40), what="40 recorded deliveries")


async def test_sweep_picks_up_events_nobody_nudged(client, jobs, tenant, receiver, monkeypatch):
    """Events written by a process that never loaded the webhook hook (a CLI import) still go out."""
    from kabar import hooks
    from kabar.integrations import dispatch

    hook = await subscribe(tenant, receiver.url, ["contact.created"])
    await dispatcher_idle(client, hook["id"])
    monkeypatch.setattr(hooks, "EVENTS_HOOKS", [])
    monkeypatch.setattr("kabar.db.uow.EVENTS_HOOKS", [])
    await dispatch.stop_sweeper(client.runtime)  # this test sweeps by hand
    try:
        await emit(client.runtime, tenant.ws, "contact.created")
        assert await client.runtime.db.transaction(dispatch.sweep) >= 1
    finally:
        await dispatch.start_sweeper(client.runtime)
    got = await wait_for(lambda: receiver.accepted(), what="the swept event")
    assert got[0].json["type"] == "contact.created" and got[0].signature_ok(hook["secret"])
