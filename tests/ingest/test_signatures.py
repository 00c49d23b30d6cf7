"""Webhook authentication: the signature over the raw body, with the right workspace's secret,
or 401 and nothing stored. Also the Meta GET handshake and the body limit."""

from __future__ import annotations

from typing import Any

import pytest

from kabar.channels import signing
from kabar.channels.fake import payloads as p
from kabar.db import tables as t
from tests.channels.support import configure, count, post_meta
from tests.helpers import assert_problem

PHONE = "+6285712345678"


TABLES = (t.webhook_receipts, t.messages, t.contacts, t.conversations, t.events, t.jobs)


async def snapshot(client: Any, ws: str) -> dict[str, int]:
    counts = {table.name: await count(client, table, ws) for table in TABLES}
    counts["unrouted"] = await count(client, t.webhook_receipts, "")
    return counts


def bodies(pnid: str) -> tuple[bytes, bytes]:
    kapso = p.encode(p.kapso_received(pnid=pnid, phone=PHONE, text="Yang ini ukuran berapa? 👟"))
    meta = p.encode(p.meta_envelope(pnid, {"contacts": [{"profile": {"name": "Siti"}, "wa_id": PHONE[1:]}],
                                           "messages": [{"from": PHONE[1:], "id": "wamid.SIG", "timestamp": "1767231000", "type": "text", "text": {"body": "hai"}}]}))
    return kapso, meta


@pytest.fixture
async def pair(client: Any, workspace: Any, owner_tenant: Any) -> tuple[Any, Any, Any]:
    """A workspace with a Kapso and Meta channel each… and another workspace with its own secrets."""
    mine = await configure(workspace, "kapso")
    other_ws = await client.post("/v1/workspaces", json={"name": "Toko Lain"}, headers=owner_tenant.owner.headers)
    from tests.helpers import Tenant

    other = Tenant(client=client, ws=other_ws.json()["id"], owner=owner_tenant.owner)
    theirs = await configure(other, "kapso")
    return workspace, mine, theirs


@pytest.mark.parametrize("case", ["wrong_secret", "tampered_body", "missing_header", "other_workspace_secret", "empty_secret"])
async def test_kapso_bad_signature_is_401_and_stores_nothing(client, pair, case):
    workspace, mine, theirs = pair
    raw, _ = bodies(mine.pnid)
    headers = p.kapso_headers(raw, mine.webhook_secret, "whatsapp.message.received")
    if case == "wrong_secret":
        headers["x-webhook-signature"] = signing.sign("not-the-secret", raw)
    elif case == "tampered_body":
        raw = raw.replace("ukuran".encode(), "harga ".encode())
    elif case == "missing_header":
        del headers["x-webhook-signature"]
    elif case == "other_workspace_secret":
        headers["x-webhook-signature"] = signing.sign(theirs.webhook_secret, raw)
    elif case == "empty_secret":
        headers["x-webhook-signature"] = signing.sign("", raw)
    before = await snapshot(client, workspace.ws)
    response = await client.post("/webhooks/kapso", content=raw, headers=headers)
    assert_problem(response, 401, "invalid-signature")
    assert await snapshot(client, workspace.ws) == before
    assert before["webhook_receipts"] == before["messages"] == 0


@pytest.mark.parametrize("case", ["wrong_secret", "tampered_body", "missing_header", "kapso_secret", "other_algorithm"])
async def test_meta_bad_signature_is_401_and_stores_nothing(client, workspace, case):
    channel = await configure(workspace, "meta")
    _, raw = bodies(channel.pnid)
    header = "sha256=" + signing.sign(channel.app_secret, raw)
    if case == "wrong_secret":
        header = "sha256=" + signing.sign("nope", raw)
    elif case == "tampered_body":
        raw = raw.replace(b"hai", b"hey")
    elif case == "kapso_secret":
        header = "sha256=" + signing.sign(channel.webhook_secret, raw)
    elif case == "other_algorithm":
        header = "sha1=" + signing.sign(channel.app_secret, raw)
    headers = {"content-type": "application/json"} if case == "missing_header" else {"content-type": "application/json", "x-hub-signature-256": header}
    before = await snapshot(client, workspace.ws)
    response = await client.post("/webhooks/meta", content=raw, headers=headers)
    assert_problem(response, 401, "invalid-signature")
    assert await snapshot(client, workspace.ws) == before
    assert before["webhook_receipts"] == before["messages"] == 0


async def test_signature_over_the_raw_bytes_not_reserialised_json(client, workspace):
    """Pretty-printed, non-ASCII body: re-serialising would change the bytes; we verify what came."""
    channel = await configure(workspace, "kapso")
    doc = p.kapso_received(pnid=channel.pnid, phone=PHONE, text="Terima kasih 🙏 — sampai jumpa")
    import json

    raw = json.dumps(doc, indent=2, ensure_ascii=True).encode()  # \\u escapes, newlines, spaces
    headers = p.kapso_headers(raw, channel.webhook_secret, "whatsapp.message.received")
    assert (await client.post("/webhooks/kapso", content=raw, headers=headers)).status_code == 200
    assert await count(client, t.messages, workspace.ws) == 1


@pytest.mark.parametrize("form", ["prefixed", "uppercase"])
async def test_tolerated_signature_forms(client, workspace, form):
    channel = await configure(workspace, "kapso")
    raw, _ = bodies(channel.pnid)
    headers = p.kapso_headers(raw, channel.webhook_secret, "whatsapp.message.received")
    digest = headers["x-webhook-signature"]
    headers["x-webhook-signature"] = "sha256=" + digest if form == "prefixed" else digest.upper()
    assert (await client.post("/webhooks/kapso", content=raw, headers=headers)).status_code == 200


async def test_kapso_forwarded_meta_body_with_meta_signature(client, workspace):
    channel = await configure(workspace, "kapso")
    _, raw = bodies(channel.pnid)
    response = await client.post("/webhooks/kapso", content=raw, headers=p.meta_headers(raw, channel.app_secret))
    assert response.status_code == 200
    assert await count(client, t.messages, workspace.ws) == 1


async def test_meta_verification_handshake(client, workspace):
    channel = await configure(workspace, "meta")
    ok = await client.get("/webhooks/meta", params={"hub.mode": "subscribe", "hub.verify_token": channel.verify_token, "hub.challenge": "1158201444"})
    assert ok.status_code == 200 and ok.text == "1158201444" and ok.headers["content-type"].startswith("text/plain")
    for params in (
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": channel.verify_token, "hub.challenge": "1"},
        {"hub.challenge": "1"},
    ):
        assert_problem(await client.get("/webhooks/meta", params=params), 403)


async def test_kapso_endpoint_rejects_get(client):
    assert (await client.get("/webhooks/kapso", params={"hub.challenge": "1"})).status_code == 405


async def test_body_over_the_limit_is_413(client, workspace):
    channel = await configure(workspace, "kapso")
    raw = b'{"pad": "' + b"x" * (4 * 1024 * 1024 + 10) + b'"}'
    headers = p.kapso_headers(raw, channel.webhook_secret, "whatsapp.message.received")
    before = await snapshot(client, workspace.ws)
    assert_problem(await client.post("/webhooks/kapso", content=raw, headers=headers), 413)
    assert await snapshot(client, workspace.ws) == before


async def test_a_three_megabyte_meta_batch_is_accepted(client, workspace):
    """Meta batches up to 1000 updates and 3 MB; every message in it is applied."""
    channel = await configure(workspace, "meta")
    messages = [{"from": f"62812{i:08d}", "id": f"wamid.BIG{i}", "timestamp": "1767231000", "type": "text", "text": {"body": "x" * 2900}}
                for i in range(1000)]
    raw = p.encode(p.meta_envelope(channel.pnid, {"messages": messages}))
    assert 2_900_000 < len(raw) < 4 * 1024 * 1024
    assert (await post_meta(client, channel, p.meta_envelope(channel.pnid, {"messages": messages}))).status_code == 200
    assert await count(client, t.messages, workspace.ws) == 1000
    assert await count(client, t.contacts, workspace.ws) == 1000
