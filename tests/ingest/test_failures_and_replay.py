"""Never drop a payload: a delivery that cannot be applied is kept as a failed receipt (200,
counted in /metrics) and applied later by replay; storage outages answer 503; bodies for unknown
numbers are kept and routed by replay once the channel exists."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from kabar.channels.fake import payloads as p
from kabar.channels.kapso import webhook as kapso_webhook
from kabar.db import tables as t
from kabar.db.engine import StorageUnavailable
from kabar.ingest import service
from kabar.observability import metrics
from tests.channels.support import configure, count, post_kapso, rows
from tests.helpers import assert_problem

PHONE = "+6281311112222"


def failed_total() -> float:
    return metrics.WEBHOOKS_RECEIVED.labels("kapso", "failed")._value.get()


async def test_a_bug_while_applying_keeps_the_payload_and_replay_applies_it(client, workspace, monkeypatch):
    channel = await configure(workspace, "kapso")
    doc = p.kapso_received(pnid=channel.pnid, phone=PHONE, text="jangan sampai hilang")
    before = failed_total()

    def broken(self: Any, event: Any) -> None:
        raise RuntimeError("simulated bug in the message handler")

    monkeypatch.setattr(service.Applier, "_on_inboundmessage", broken)
    response = await post_kapso(client, channel, doc, key="k-bug")
    assert response.status_code == 200 and response.json() == {"status": "failed"}
    [receipt] = await rows(client, t.webhook_receipts, workspace.ws)
    assert receipt.status == "failed" and "simulated bug" in receipt.error
    assert await count(client, t.messages, workspace.ws) == 0 and await count(client, t.contacts, workspace.ws) == 0
    assert failed_total() == before + 1
    scrape = (await client.get("/metrics")).text
    assert 'kabar_webhooks_received_total{outcome="failed",provider="kapso"}' in scrape

    # The provider retries the same delivery: still acknowledged, not applied twice.
    assert (await post_kapso(client, channel, doc, key="k-bug")).status_code == 200
    monkeypatch.undo()  # the bug is fixed
    assert await service.replay(client.runtime, receipt.id) == "applied"
    [receipt] = await rows(client, t.webhook_receipts, workspace.ws)
    assert (receipt.status, receipt.error, receipt.attempts) == ("applied", None, 2)
    assert [m.text for m in await rows(client, t.messages, workspace.ws)] == ["jangan sampai hilang"]
    # Replaying again is harmless.
    assert await service.replay(client.runtime, receipt.id) == "applied"
    assert await count(client, t.messages, workspace.ws) == 1
    assert (await rows(client, t.conversations, workspace.ws))[0].unread_count == 1


async def test_an_unknown_shape_is_kept_as_failed(client, workspace, monkeypatch):
    channel = await configure(workspace, "kapso")

    def unreadable(doc: Any, headers: Any) -> Any:
        raise KeyError("message")

    monkeypatch.setattr(kapso_webhook, "normalise", unreadable)
    response = await post_kapso(client, channel, p.kapso_received(pnid=channel.pnid, phone=PHONE, text="?"))
    assert response.status_code == 200
    assert [r.status for r in await rows(client, t.webhook_receipts, workspace.ws)] == ["failed"]


async def test_storage_outage_is_503_so_the_provider_retries(client, workspace, monkeypatch):
    channel = await configure(workspace, "kapso")
    doc = p.kapso_received(pnid=channel.pnid, phone=PHONE, text="saat database mati")
    real = client.runtime.db.transaction

    async def down(*args: Any, **kwargs: Any) -> Any:
        raise StorageUnavailable("connection refused")

    monkeypatch.setattr(client.runtime.db, "transaction", down)
    response = await post_kapso(client, channel, doc, key="k-outage")
    assert_problem(response, 503)
    assert response.headers.get("retry-after")
    monkeypatch.setattr(client.runtime.db, "transaction", real)
    assert await count(client, t.webhook_receipts, workspace.ws) == 0
    # The provider's retry, once storage is back, is applied normally.
    assert (await post_kapso(client, channel, doc, key="k-outage")).status_code == 200
    assert await count(client, t.messages, workspace.ws) == 1


async def test_unknown_number_is_kept_and_routed_by_replay_once_configured(client, workspace):
    from kabar.channels import signing

    pnid, secret = "pn-later-" + workspace.ws[-8:], "secret-set-later"
    doc = p.kapso_received(pnid=pnid, phone=PHONE, text="sebelum channel dibuat")
    raw = p.encode(doc)
    headers = p.kapso_headers(raw, secret, "whatsapp.message.received", key="k-early-" + workspace.ws)
    response = await client.post("/webhooks/kapso", content=raw, headers=headers)
    assert response.status_code == 200 and response.json() == {"status": "unrouted"}
    stored = await rows(client, t.webhook_receipts, "", t.webhook_receipts.c.receipt_key == "k-early-" + workspace.ws)
    assert [r.status for r in stored] == ["unrouted"]
    # Still unknown: stays unrouted.
    assert await service.replay(client.runtime, stored[0].id) == "unrouted"
    # Configured with the wrong secret: the stored signature does not verify, nothing applied.
    body = {"provider": "kapso", "phone_number_id": pnid, "api_key": "k", "webhook_secret": "another", "api_base_url": "http://127.0.0.1:9/x"}
    assert (await client.put(f"{workspace.base}/channel", json=body, headers=workspace.owner.headers)).status_code == 200
    assert await service.replay(client.runtime, stored[0].id) == "unrouted"
    assert await count(client, t.messages, workspace.ws) == 0
    body["webhook_secret"] = secret
    assert (await client.put(f"{workspace.base}/channel", json=body, headers=workspace.owner.headers)).status_code == 200
    assert await service.replay(client.runtime, stored[0].id) == "routed"
    assert [m.text for m in await rows(client, t.messages, workspace.ws)] == ["sebelum channel dibuat"]
    assert [r.status for r in await rows(client, t.webhook_receipts, workspace.ws)] == ["applied"]
    assert signing.matches(raw, secret, headers["x-webhook-signature"])


async def test_concurrent_deliveries_about_one_new_customer(client, workspace):
    """Twenty messages from a brand-new customer at once, each delivered twice concurrently."""
    import asyncio

    channel = await configure(workspace, "kapso")
    docs = [p.kapso_received(pnid=channel.pnid, phone=PHONE, text=f"pesan {i}", ts=1767230000 + i) for i in range(20)]
    responses = await asyncio.gather(*(post_kapso(client, channel, doc, key=f"c{i}") for i, doc in enumerate(docs) for _ in range(2)))
    assert {r.status_code for r in responses} == {200}
    assert await count(client, t.contacts, workspace.ws) == 1
    assert await count(client, t.conversations, workspace.ws) == 1
    assert await count(client, t.messages, workspace.ws) == 20
    assert (await rows(client, t.conversations, workspace.ws))[0].unread_count == 20


async def test_cli_lists_and_replays_failed_receipts(client, workspace, settings, monkeypatch):
    channel = await configure(workspace, "kapso")
    monkeypatch.setattr(service.Applier, "_on_inboundmessage", lambda self, event: 1 / 0)
    assert (await post_kapso(client, channel, p.kapso_received(pnid=channel.pnid, phone=PHONE, text="via CLI"))).status_code == 200
    monkeypatch.undo()
    [receipt] = await rows(client, t.webhook_receipts, workspace.ws)
    env = {**os.environ, "KABAR_DATABASE_URL": settings.database_url, "KABAR_DATA_DIR": settings.data_dir, "COLUMNS": "300"}
    listed = subprocess.run([sys.executable, "-m", "kabar", "webhooks", "list", "--failed", "--workspace", workspace.ws],
                            env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert receipt.id[:8] in listed.stdout and "ZeroDivisionError" in listed.stdout
    replayed = subprocess.run([sys.executable, "-m", "kabar", "webhooks", "replay", "--id", receipt.id],
                              env=env, capture_output=True, text=True, timeout=60)
    assert replayed.returncode == 0, replayed.stderr
    assert f"{receipt.id} applied" in replayed.stdout
    assert [m.text for m in await rows(client, t.messages, workspace.ws)] == ["via CLI"]
    missing = subprocess.run([sys.executable, "-m", "kabar", "webhooks", "replay"], env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0


@pytest.mark.parametrize("raw", [b"not json at all", b"[1, 2, 3]"])
async def test_signed_garbage_is_acknowledged_and_kept(client, raw):
    headers = p.kapso_headers(raw, "whatever", "whatsapp.message.received", key=None)
    response = await client.post("/webhooks/kapso", content=raw, headers=headers)
    assert response.status_code == 200
    r = t.webhook_receipts
    kept = await client.runtime.db.read(lambda conn: conn.execute(r.select().where(r.c.receipt_key == headers["x-idempotency-key"])).all())
    assert [(k.workspace_id, k.status, bytes(k.body)) for k in kept] == [("", "unrouted", raw)]


async def test_webhooks_arriving_together_succeed_or_fail_each_on_their_own(client, workspace, monkeypatch):
    """On SQLite webhooks that arrive together share one transaction (group commit): a failing one
    and a forged one among them change nothing of the others, and leave nothing of their own."""
    import asyncio

    channel = await configure(workspace, "kapso")
    real = service.on_inbound_message

    def buggy_for_one(uow: Any, message: Any, *args: Any) -> None:
        # The last step of applying a webhook: its rows are written and its events queued.
        if message.text == "rusak":
            raise RuntimeError("simulated bug for one message")
        real(uow, message, *args)

    monkeypatch.setattr(service, "on_inbound_message", buggy_for_one)
    texts = [f"pesan {i}" for i in range(12)]
    docs = [p.kapso_received(pnid=channel.pnid, phone=f"+62813111{i:05d}", text=text) for i, text in enumerate(texts)]
    broken = p.kapso_received(pnid=channel.pnid, phone="+6281399990000", text="rusak")
    forged = p.kapso_received(pnid=channel.pnid, phone="+6281399990001", text="palsu")
    responses = await asyncio.gather(
        *(post_kapso(client, channel, doc, key=f"t{i}") for i, doc in enumerate(docs[:6])),
        post_kapso(client, channel, broken, key="t-broken"),
        post_kapso(client, channel, forged, key="t-forged", secret="not-the-secret"),
        *(post_kapso(client, channel, doc, key=f"t{i + 6}") for i, doc in enumerate(docs[6:])),
    )
    assert [r.status_code for r in responses] == [200] * 7 + [401] + [200] * 6
    assert responses[6].json() == {"status": "failed"}
    assert sorted(m.text for m in await rows(client, t.messages, workspace.ws)) == sorted(texts)
    assert await count(client, t.contacts, workspace.ws) == 12
    receipts = {r.receipt_key: r.status for r in await rows(client, t.webhook_receipts, workspace.ws)}
    assert receipts == {**{f"t{i}": "applied" for i in range(12)}, "t-broken": "failed"}
    # The event log holds the applied webhooks' events only: one message.created per message.
    created = [e for e in await rows(client, t.events, workspace.ws) if e.type == "message.created"]
    assert sorted(e.data["text"] for e in created) == sorted(texts)
