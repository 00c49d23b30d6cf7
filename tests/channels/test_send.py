"""Sending, end to end over real HTTP: Kabar's send job → the fake provider → signed status webhooks
back to Kabar → visible through the messages API. Retries, Retry-After, permanent errors, and the
rule that a send never goes out twice because a job was retried."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kabar.channels.fake import payloads as p
from kabar.db import tables as t
from kabar.messages.schemas import STATUS_RANK
from tests.channels.support import configure, message, post_kapso, rows, wait_for

PHONE = "+6281277778888"
pytestmark = pytest.mark.usefixtures("jobs")


async def start_conversation(client: Any, ws: Any, channel: Any, text: str = "Halo kak, masih ada?") -> tuple[str, str]:
    doc = p.kapso_received(pnid=channel.pnid, phone=PHONE, text=text, name="Dewi")
    assert (await post_kapso(client, channel, doc)).status_code == 200
    conversation = (await rows(client, t.conversations, ws.ws))[0]
    return conversation.id, doc["message"]["id"]


async def send(client: Any, ws: Any, conversation_id: str, body: dict[str, Any]) -> str:
    response = await client.post(f"{ws.base}/conversations/{conversation_id}/messages", json=body, headers=ws.owner.headers)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "pending"
    return response.json()["id"]


async def api_message(client: Any, ws: Any, conversation_id: str, message_id: str) -> dict[str, Any]:
    response = await client.get(f"{ws.base}/conversations/{conversation_id}/messages", headers=ws.owner.headers)
    assert response.status_code == 200
    return next(m for m in response.json()["data"] if m["id"] == message_id)


async def until_status(client: Any, ws: Any, conversation_id: str, message_id: str, status: str, timeout: float = 45) -> dict[str, Any]:
    seen: list[str] = []

    async def reached() -> dict[str, Any] | None:
        m = await api_message(client, ws, conversation_id, message_id)
        if not seen or seen[-1] != m["status"]:
            seen.append(m["status"])
        return m if m["status"] == status else None

    try:
        found = await wait_for(reached, timeout=timeout)
    except AssertionError as exc:  # say what arrived, for the next person reading a failure
        receipts = [(r.event_type, r.status, r.error) for r in await rows(client, t.webhook_receipts, ws.ws)]
        history = [(h.status, h.message_id is not None) for h in await rows(client, t.message_status_history, ws.ws)]
        raise AssertionError(f"{exc}; seen {seen}; receipts {receipts}; status history {history}") from None
    ranks = [STATUS_RANK[s] for s in seen]
    assert ranks == sorted(ranks), f"status went backwards: {seen}"
    return found


async def test_text_goes_sent_delivered_read(client, workspace, fake):
    channel = await configure(workspace, fake=fake)
    conversation_id, _ = await start_conversation(client, workspace, channel)
    message_id = await send(client, workspace, conversation_id, {"type": "text", "text": "Masih kak, mau ukuran berapa? https://toko.id/katalog"})
    final = await until_status(client, workspace, conversation_id, message_id, "read")
    [sent] = fake.state.messages
    assert final["provider_message_id"] == sent["id"] and final["error"] is None
    body = sent["body"]
    assert (body["to"], body["type"], body["biz_opaque_callback_data"]) == (PHONE, "text", message_id)
    assert body["text"] == {"body": "Masih kak, mau ukuran berapa? https://toko.id/katalog", "preview_url": True}
    updates = [e.data["status"] for e in await rows(client, t.events, workspace.ws) if e.type == "message.updated" and e.data["id"] == message_id]
    assert updates[-1] == "read" and [STATUS_RANK[s] for s in updates] == sorted(STATUS_RANK[s] for s in updates)


async def test_provider_500_twice_then_200_sends_exactly_once(client, workspace, fake):
    channel = await configure(workspace, fake=fake)
    conversation_id, _ = await start_conversation(client, workspace, channel)
    fake.state.failures.extend([{"status": 500}, {"status": 500}])
    message_id = await send(client, workspace, conversation_id, {"type": "text", "text": "Coba lagi ya"})
    await until_status(client, workspace, conversation_id, message_id, "read")
    assert len(fake.state.messages) == 1
    assert [r["outcome"] if isinstance(r["outcome"], str) else r["outcome"].get("status") for r in fake.state.requests] == [500, 500, "accepted"]


async def test_429_retry_after_is_honoured(client, workspace, fake):
    channel = await configure(workspace, fake=fake)
    conversation_id, _ = await start_conversation(client, workspace, channel)
    fake.state.failures.append({"status": 429, "retry_after": 1})
    message_id = await send(client, workspace, conversation_id, {"type": "text", "text": "Pelan-pelan"})
    await until_status(client, workspace, conversation_id, message_id, "sent")
    first, second = fake.state.requests
    assert second["at"] - first["at"] >= 0.95
    assert len(fake.state.messages) == 1


async def test_outside_the_window_131047_fails_with_the_error(client, workspace, fake):
    channel = await configure(workspace, fake=fake)
    conversation_id, _ = await start_conversation(client, workspace, channel)
    fake.state.failures.append({"status": 400, "code": 131047})
    message_id = await send(client, workspace, conversation_id, {"type": "text", "text": "Halo lagi"})
    failed = await until_status(client, workspace, conversation_id, message_id, "failed")
    assert failed["error"]["code"] == 131047 and failed["error"]["title"] == "Re-engagement message"
    assert len(fake.state.requests) == 1 and fake.state.messages == []  # permanent: not retried
    updated = [e.data for e in await rows(client, t.events, workspace.ws) if e.type == "message.updated" and e.data["id"] == message_id]
    assert updated[-1]["status"] == "failed"


async def test_accepted_then_failed_by_webhook(client, workspace, fake):
    channel = await configure(workspace, fake=fake)
    conversation_id, _ = await start_conversation(client, workspace, channel)
    fake.state.failures.append({"fail_after_accept": {"code": 131026}})
    message_id = await send(client, workspace, conversation_id, {"type": "text", "text": "Tidak sampai"})
    failed = await until_status(client, workspace, conversation_id, message_id, "failed")
    assert failed["error"]["code"] == 131026 and failed["provider_message_id"] == fake.state.messages[0]["id"]


async def test_a_lost_answer_after_acceptance_is_not_sent_twice(client, workspace, fake, monkeypatch):
    """The provider accepts, but its answer never reaches us (timeout). The job must not resend:
    it waits for the status webhook, whose callback data links the provider id to the message."""
    monkeypatch.setattr(client.runtime, "settings", replace(client.runtime.settings, provider_timeout=0.5, send_confirm_seconds=3.0))
    channel = await configure(workspace, fake=fake)
    conversation_id, _ = await start_conversation(client, workspace, channel)
    fake.state.failures.append({"timeout": 2.0})
    message_id = await send(client, workspace, conversation_id, {"type": "text", "text": "Sekali saja ya"})
    await until_status(client, workspace, conversation_id, message_id, "read")
    await wait_for(lambda: _job_done(client, message_id), timeout=15)
    assert len(fake.state.messages) == 1 and len(fake.state.requests) == 1


async def test_an_unconfirmed_send_is_sent_again_after_the_confirmation_window(client, workspace, fake, monkeypatch):
    """No answer and no webhook at all: after the window Kabar concludes it was not delivered."""
    monkeypatch.setattr(client.runtime, "settings", replace(client.runtime.settings, provider_timeout=0.3, send_confirm_seconds=1.0))
    channel = await configure(workspace, fake=fake)
    conversation_id, _ = await start_conversation(client, workspace, channel)
    fake.state.statuses = False
    fake.state.failures.append({"timeout": 1.0})
    message_id = await send(client, workspace, conversation_id, {"type": "text", "text": "Halo?"})
    sent = await until_status(client, workspace, conversation_id, message_id, "sent")
    assert len(fake.state.requests) == 2
    assert sent["provider_message_id"] == fake.state.messages[-1]["id"]
    assert fake.state.requests[1]["at"] - fake.state.requests[0]["at"] >= 1.0


async def _job_done(client: Any, message_id: str) -> bool:
    jobs = await client.runtime.db.read(lambda conn: conn.execute(t.jobs.select().where(t.jobs.c.kind == "message.send")).all())
    return any(j.payload.get("message_id") == message_id and j.status == "done" for j in jobs)


async def test_media_from_an_upload_goes_through_the_provider_media_endpoint(client, workspace, fake):
    channel = await configure(workspace, fake=fake)
    conversation_id, _ = await start_conversation(client, workspace, channel)
    png = b"\x89PNG\r\n\x1a\n" + b"kabar" * 100
    uploaded = await client.post(f"{workspace.base}/uploads", files={"file": ("katalog.png", png, "image/png")}, headers=workspace.owner.headers)
    assert uploaded.status_code in (200, 201), uploaded.text
    upload_id = uploaded.json()["upload_id"]
    message_id = await send(client, workspace, conversation_id, {"type": "image", "media": {"upload_id": upload_id, "caption": "Katalog terbaru"}})
    await until_status(client, workspace, conversation_id, message_id, "sent")
    [sent] = fake.state.messages
    media_id = sent["body"]["image"]["id"]
    assert sent["body"]["image"] == {"id": media_id, "caption": "Katalog terbaru"}
    assert fake.state.media[media_id] == (png, "image/png")


async def test_media_link_template_and_reply_context(client, workspace, fake):
    channel = await configure(workspace, fake=fake)
    conversation_id, inbound_wamid = await start_conversation(client, workspace, channel)
    inbound = await message(client, workspace.ws, inbound_wamid)
    ids = [
        await send(client, workspace, conversation_id, {"type": "document", "media": {"url": "https://cdn.example.co.id/invoice.pdf", "filename": "INV-1.pdf", "caption": "Invoice"}}),
        await send(client, workspace, conversation_id, {"type": "template", "template": {"name": "order_update", "language": "id", "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "Budi"}]}]}}),
        await send(client, workspace, conversation_id, {"type": "text", "text": "Masih ada kak", "reply_to_id": inbound.id}),
    ]
    for message_id in ids:
        await until_status(client, workspace, conversation_id, message_id, "sent")
    by_id = {m["body"]["biz_opaque_callback_data"]: m["body"] for m in fake.state.messages}
    assert by_id[ids[0]]["document"] == {"link": "https://cdn.example.co.id/invoice.pdf", "caption": "Invoice", "filename": "INV-1.pdf"}
    assert by_id[ids[1]]["template"] == {"name": "order_update", "language": {"code": "id"},
                                         "components": [{"type": "body", "parameters": [{"type": "text", "text": "Budi"}]}]}
    assert by_id[ids[2]]["context"] == {"message_id": inbound_wamid}
    # Sent in the order they were written (one conversation's sends run one at a time).
    assert [m["body"]["biz_opaque_callback_data"] for m in fake.state.messages] == ids


async def test_wrong_api_key_fails_the_message(client, workspace, fake):
    channel = await configure(workspace, fake=fake)
    fake.state.api_key = "rotated"
    conversation_id, _ = await start_conversation(client, workspace, channel)
    message_id = await send(client, workspace, conversation_id, {"type": "text", "text": "halo"})
    failed = await until_status(client, workspace, conversation_id, message_id, "failed")
    assert failed["error"]["code"] == 0 and fake.state.messages == []


async def test_reading_a_conversation_tells_the_provider(client, workspace, fake):
    channel = await configure(workspace, fake=fake)
    conversation_id, wamid = await start_conversation(client, workspace, channel)
    response = await client.post(f"{workspace.base}/conversations/{conversation_id}/read", headers=workspace.owner.headers)
    assert response.status_code == 200, response.text
    await wait_for(lambda: _reads(fake))
    assert [r["message_id"] for r in fake.state.reads] == [wamid]


async def _reads(fake: Any) -> list[Any]:
    return fake.state.reads


@pytest.mark.parametrize("provider", ["kapso", "meta", "kapso-forwarded-meta"])
async def test_inbound_media_is_downloaded_through_the_provider(client, workspace, fake, settings, provider):
    channel = await configure(workspace, provider.split("-")[0], fake=fake)
    if provider == "meta":
        fake.state.api_key = None  # Meta authenticates with a bearer token, which the fake does not check
    jpeg = b"\xff\xd8\xff\xe0" + b"foto bukti transfer " * 50
    media_id = (await fake.http.post(fake.url + "/_fake/media", content=jpeg, headers={"content-type": "image/jpeg"})).json()["id"]
    image = {"type": "image", "image": {"id": media_id, "mime_type": "image/jpeg", "caption": "Bukti transfer"}}
    if provider == "kapso":
        image["kapso"] = {"media_url": f"{fake.url}/_fake/media/{media_id}"}
        doc = p.kapso_received(pnid=channel.pnid, phone=PHONE, message=image)
        assert (await post_kapso(client, channel, doc)).status_code == 200
        wamid = doc["message"]["id"]
    else:
        from tests.channels.support import post_meta

        wamid = "wamid.MEDIA-" + media_id
        if provider == "kapso-forwarded-meta":  # Meta's lookaside URL: resolved through Kapso's proxy instead
            image["image"]["url"] = f"https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid={media_id}"
        body = {"from": PHONE[1:], "id": wamid, "timestamp": "1767231000", **image}
        envelope = p.meta_envelope(channel.pnid, {"messages": [body]})
        path = "/webhooks/kapso" if provider == "kapso-forwarded-meta" else "/webhooks/meta"
        secret = channel.app_secret
        assert (await post_meta(client, channel, envelope, path=path, secret=secret)).status_code == 200

    async def downloaded() -> Any:
        m = await message(client, workspace.ws, wamid)
        return m if m.media.get("id") else None

    m = await wait_for(downloaded)
    assert m.media["caption"] == "Bukti transfer" and m.media["size"] == len(jpeg)
    [upload] = await rows(client, t.uploads, workspace.ws)
    assert (upload.id, upload.origin, upload.mime_type, upload.size) == (m.media["id"], "inbound", "image/jpeg", len(jpeg))
    # It belongs to its conversation (kabar.auth.visibility: downloadable by whoever may see that).
    assert (upload.conversation_id, upload.contact_id) == (m.conversation_id, m.contact_id)
    assert (Path(settings.data_dir) / upload.path).read_bytes() == jpeg


async def test_no_channel_fails_the_message(client, workspace):
    from kabar.messages.service import create_outbound_message

    from kabar.ids import new_id
    from kabar.db.types import utcnow

    now = utcnow()
    contact_id, conversation_id = new_id(), new_id()

    def seed(uow: Any) -> str:
        uow.conn.execute(t.contacts.insert().values(id=contact_id, workspace_id=workspace.ws, phone_e164=PHONE, phone_raw=PHONE, tags=[], attributes={},
                                                    search_text="", created_at=now, updated_at=now))
        uow.conn.execute(t.conversations.insert().values(id=conversation_id, workspace_id=workspace.ws, contact_id=contact_id, last_message_at=now,
                                                         created_at=now, updated_at=now))
        return create_outbound_message(uow, workspace_id=workspace.ws, conversation_id=conversation_id, sender_type="user", sender_id=None,
                                       type="template", template={"name": "hello_world", "language": "en_US"}).id

    message_id = await client.runtime.db.transaction(seed)
    failed = await until_status(client, workspace, conversation_id, message_id, "failed")
    assert failed["error"]["code"] == "channel_not_configured"
