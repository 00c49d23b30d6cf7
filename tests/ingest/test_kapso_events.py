"""Kapso v2 payloads for every event in the wire-formats reference (§1.2, §1.5, §1.6), single and
batched, duplicated and re-delivered."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from sqlalchemy import insert

from kabar.channels.fake import payloads as p
from kabar.db import tables as t
from kabar.db.types import utcnow
from kabar.hooks import INBOUND_MESSAGE_HOOKS
from kabar.ids import new_id
from kabar.jobs.registry import Job
from tests.channels.support import configure, count, message, post_kapso, rows

PHONE = "+6281234567890"


@pytest.fixture
async def kapso(workspace: Any) -> Any:
    return await configure(workspace, "kapso")


@pytest.fixture
def hooked() -> Any:
    """Messages handed to the inbound-message hook (where ARI plugs in)."""
    seen: list[str] = []

    def hook(uow: Any, message: Any, conversation: Any, contact: Any) -> None:
        assert conversation.id == message.conversation_id and contact.id == message.contact_id
        seen.append(message.provider_message_id)

    INBOUND_MESSAGE_HOOKS.append(hook)
    yield seen
    INBOUND_MESSAGE_HOOKS.remove(hook)


async def our_message(client: Any, ws: str, wamid: str | None, status: str = "pending") -> str:
    """An outbound message as the send path stores it (the customer wrote first)."""
    conversation = (await rows(client, t.conversations, ws))[0]
    message_id = new_id()
    values = {"id": message_id, "workspace_id": ws, "conversation_id": conversation.id, "contact_id": conversation.contact_id,
              "direction": "outbound", "sender_type": "user", "type": "text", "text": "Pesanan Anda sudah dikirim",
              "status": status, "provider_message_id": wamid, "reactions": [], "metadata": {}, "created_at": utcnow(), "updated_at": utcnow()}
    await client.runtime.db.transaction(lambda uow: uow.conn.execute(insert(t.messages).values(**values)))
    return message_id


async def receipts(client: Any, ws: str) -> list[str]:
    return [r.status for r in await rows(client, t.webhook_receipts, ws)]


async def test_message_received_creates_contact_conversation_message(client, workspace, kapso, hooked):
    doc = p.kapso_received(pnid=kapso.pnid, phone=PHONE, text="Halo, apakah stok masih ada?", name="Budi Santoso", is_new=True)
    response = await post_kapso(client, kapso, doc)
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    [contact] = await rows(client, t.contacts, workspace.ws)
    assert (contact.phone_e164, contact.profile_name, contact.name) == (PHONE, "Budi Santoso", None)
    [conversation] = await rows(client, t.conversations, workspace.ws)
    assert (conversation.contact_id, conversation.unread_count, conversation.status) == (contact.id, 1, "open")
    m = await message(client, workspace.ws, doc["message"]["id"])
    assert (m.text, m.direction, m.status, m.metadata["origin"]) == ("Halo, apakah stok masih ada?", "inbound", "received", "cloud_api")
    assert hooked == [doc["message"]["id"]]
    types = [e.type for e in await rows(client, t.events, workspace.ws) if e.type.split(".")[0] in ("contact", "conversation", "message")]
    assert types == ["contact.created", "conversation.created", "message.created"]
    assert await receipts(client, workspace.ws) == ["applied"]


async def test_missing_from_falls_back_to_conversation_phone(client, workspace, kapso):
    doc = p.kapso_received(pnid=kapso.pnid, phone=PHONE, text="tanpa from")
    del doc["message"]["from"]
    assert (await post_kapso(client, kapso, doc)).status_code == 200
    assert [c.phone_e164 for c in await rows(client, t.contacts, workspace.ws)] == [PHONE]


async def test_media_with_kapso_helpers_and_transcript(client, workspace, kapso):
    image = {"type": "image", "image": {"id": "1122334455667788", "caption": "Foto bukti transfer"},
             "kapso": {"media_url": "http://127.0.0.1:9/media/EXAMPLE",
                       "media_data": {"url": "http://127.0.0.1:9/media/EXAMPLE", "filename": "bukti.jpg", "content_type": "image/jpeg", "byte_size": 183211},
                       "message_type_data": {"caption": "Foto bukti transfer"}}}
    voice = {"type": "audio", "audio": {"id": "99", "mime_type": "audio/ogg", "voice": True},
             "kapso": {"transcript": {"text": "halo kak saya mau pesan"}, "media_url": "http://127.0.0.1:9/media/V"}}
    for body in (image, voice):
        assert (await post_kapso(client, kapso, p.kapso_received(pnid=kapso.pnid, phone=PHONE, message=body))).status_code == 200
    by_type = {m.type: m for m in await rows(client, t.messages, workspace.ws)}
    assert by_type["image"].media == {"provider_media_id": "1122334455667788", "url": "http://127.0.0.1:9/media/EXAMPLE",
                                      "mime_type": "image/jpeg", "filename": "bukti.jpg", "caption": "Foto bukti transfer", "size": 183211}
    assert by_type["image"].text == "Foto bukti transfer"
    assert by_type["audio"].media["voice"] is True and by_type["audio"].metadata["transcript"] == "halo kak saya mau pesan"
    assert by_type["audio"].text is None


@pytest.mark.parametrize("header", [True, False])
async def test_batch_of_messages_for_one_conversation(client, workspace, kapso, header):
    items = [p.kapso_received(pnid=kapso.pnid, phone=PHONE, text=text, ts=1767230101 + i) for i, text in enumerate(["Kak", "mau tanya ongkir ke Bandung", "sama Jakarta"])]
    doc = p.kapso_batch(items)
    response = await post_kapso(client, kapso, doc, batch=3 if header else None)
    assert response.status_code == 200
    stored = sorted(await rows(client, t.messages, workspace.ws), key=lambda m: m.created_at)
    assert [m.text for m in stored] == ["Kak", "mau tanya ongkir ke Bandung", "sama Jakarta"]
    [conversation] = await rows(client, t.conversations, workspace.ws)
    assert (conversation.unread_count, conversation.last_message_preview) == (3, "sama Jakarta")
    assert await count(client, t.contacts, workspace.ws) == 1


async def test_single_message_in_a_batch_envelope(client, workspace, kapso):
    doc = p.kapso_batch([p.kapso_received(pnid=kapso.pnid, phone=PHONE, text="satu saja")])
    assert (await post_kapso(client, kapso, doc, batch=1)).status_code == 200
    assert [m.text for m in await rows(client, t.messages, workspace.ws)] == ["satu saja"]


async def test_batch_then_individual_redelivery_with_new_keys_stores_each_once(client, workspace, kapso):
    items = [p.kapso_received(pnid=kapso.pnid, phone=PHONE, text=f"pesan {i}", ts=1767230200 + i) for i in range(4)]
    await post_kapso(client, kapso, p.kapso_batch(items), key="batch-1", batch=4)
    for item in items:  # Kapso's fallback after a batch exhausts its retries: one by one, new keys
        assert (await post_kapso(client, kapso, item)).status_code == 200
    assert await count(client, t.messages, workspace.ws) == 4
    [conversation] = await rows(client, t.conversations, workspace.ws)
    assert conversation.unread_count == 4
    assert sorted(await receipts(client, workspace.ws)) == ["applied"] * 5


async def test_exact_duplicate_is_acknowledged_without_effects(client, workspace, kapso):
    doc = p.kapso_received(pnid=kapso.pnid, phone=PHONE, text="sekali saja")
    for _ in range(3):
        assert (await post_kapso(client, kapso, doc, key="same-key")).status_code == 200
    assert await count(client, t.messages, workspace.ws) == 1
    assert await count(client, t.webhook_receipts, workspace.ws) == 1
    assert (await rows(client, t.conversations, workspace.ws))[0].unread_count == 1


async def test_status_events_move_our_message_forward_only(client, workspace, kapso):
    await post_kapso(client, kapso, p.kapso_received(pnid=kapso.pnid, phone=PHONE, text="halo"))
    message_id = await our_message(client, workspace.ws, "wamid.OUT1")
    history = [p.meta_status("wamid.OUT1", s, PHONE, 1767229100 + i) for i, s in enumerate(["sent", "delivered", "read"])]
    # read first, then delivered, then sent: the status never moves back.
    for n, event in ((3, "read"), (2, "delivered"), (1, "sent")):
        doc = p.kapso_outbound(pnid=kapso.pnid, phone=PHONE, wamid="wamid.OUT1", statuses=history[:n])
        assert (await post_kapso(client, kapso, doc, f"whatsapp.message.{event}")).status_code == 200
    m = await message(client, workspace.ws, "wamid.OUT1")
    assert (m.id, m.status) == (message_id, "read")
    kept = await rows(client, t.message_status_history, workspace.ws)
    assert sorted(h.status for h in kept) == ["delivered", "read", "sent"]  # each once
    assert await count(client, t.messages, workspace.ws) == 2  # the echo of our own send is not a second message


async def test_failed_event_records_the_error(client, workspace, kapso):
    await post_kapso(client, kapso, p.kapso_received(pnid=kapso.pnid, phone=PHONE, text="halo"))
    await our_message(client, workspace.ws, "wamid.OUT2", status="sent")
    error = {"code": 131047, "title": "Re-engagement message", "message": "Re-engagement message",
             "error_data": {"details": "More than 24 hours have passed since the recipient last replied to the sender number."}}
    statuses = [p.meta_status("wamid.OUT2", "sent", PHONE, 1767229100), p.meta_status("wamid.OUT2", "failed", PHONE, 1767229200, error=error)]
    doc = p.kapso_outbound(pnid=kapso.pnid, phone=PHONE, wamid="wamid.OUT2", statuses=statuses)
    assert (await post_kapso(client, kapso, doc, "whatsapp.message.failed")).status_code == 200
    m = await message(client, workspace.ws, "wamid.OUT2")
    assert m.status == "failed"
    assert m.error == {"code": 131047, "title": "Re-engagement message",
                       "details": "More than 24 hours have passed since the recipient last replied to the sender number."}
    updated = [e for e in await rows(client, t.events, workspace.ws) if e.type == "message.updated"]
    assert updated[-1].data["status"] == "failed" and updated[-1].data["error"]["code"] == 131047


async def test_status_before_its_message_is_applied_when_the_message_appears(client, workspace, kapso):
    await post_kapso(client, kapso, p.kapso_received(pnid=kapso.pnid, phone=PHONE, text="halo"))
    message_id = await our_message(client, workspace.ws, None)
    # The 'delivered' webhook beats our send's API response; it carries our id as callback data.
    status = p.meta_status("wamid.RACE", "delivered", PHONE, callback=message_id)
    doc = p.kapso_outbound(pnid=kapso.pnid, phone=PHONE, wamid="wamid.RACE", statuses=[status])
    assert (await post_kapso(client, kapso, doc, "whatsapp.message.delivered")).status_code == 200
    m = (await rows(client, t.messages, workspace.ws, t.messages.c.id == message_id))[0]
    assert (m.provider_message_id, m.status) == ("wamid.RACE", "delivered")


async def test_business_app_echo_is_an_outbound_message(client, workspace, kapso, hooked):
    msg = {"type": "text", "text": {"body": "Dikirim dari HP toko"}}
    statuses = [p.meta_status("wamid.ECHO", "sent", PHONE, 1767229300)]
    doc = p.kapso_outbound(pnid=kapso.pnid, phone=PHONE, wamid="wamid.ECHO", statuses=statuses, message=msg, origin="business_app")
    assert (await post_kapso(client, kapso, doc, "whatsapp.message.sent")).status_code == 200
    m = await message(client, workspace.ws, "wamid.ECHO")
    assert (m.direction, m.sender_type, m.text, m.status, m.metadata["origin"]) == ("outbound", "user", "Dikirim dari HP toko", "sent", "business_app")
    [conversation] = await rows(client, t.conversations, workspace.ws)
    assert (conversation.unread_count, conversation.last_message_preview) == (0, "Dikirim dari HP toko")
    assert hooked == []


async def test_history_sync_counts_no_unread_and_triggers_nothing(client, workspace, kapso, hooked):
    doc = p.kapso_received(pnid=kapso.pnid, phone=PHONE, text="pesan lama", origin="history_sync", ts=1700000000)
    assert (await post_kapso(client, kapso, doc)).status_code == 200
    [conversation] = await rows(client, t.conversations, workspace.ws)
    assert conversation.unread_count == 0 and hooked == []


async def test_stale_message_is_stored_but_triggers_no_automation(client, workspace, kapso, hooked):
    doc = p.kapso_received(pnid=kapso.pnid, phone=PHONE, text="dikirim ulang setelah 3 hari", ts=1700000000)
    assert (await post_kapso(client, kapso, doc)).status_code == 200
    assert await count(client, t.messages, workspace.ws) == 1 and hooked == []


async def test_api_echo_of_an_unknown_message_is_stored_after_the_confirmation_window(client, workspace, kapso):
    from kabar.ingest.tasks import reconcile_echo

    await post_kapso(client, kapso, p.kapso_received(pnid=kapso.pnid, phone=PHONE, text="halo"))
    msg = {"type": "text", "text": {"body": "Dari workflow Kapso"}}
    doc = p.kapso_outbound(pnid=kapso.pnid, phone=PHONE, wamid="wamid.WF", statuses=[p.meta_status("wamid.WF", "sent", PHONE)], message=msg)
    assert (await post_kapso(client, kapso, doc, "whatsapp.message.sent")).status_code == 200
    assert await message(client, workspace.ws, "wamid.WF") is None  # might still be ours: wait
    [job] = await rows_jobs(client, workspace.ws, "ingest.reconcile_echo")
    await reconcile_echo(client.runtime, Job(job.id, job.kind, job.payload, job.workspace_id, None, 1, 8))
    m = await message(client, workspace.ws, "wamid.WF")
    assert (m.direction, m.text, m.status, m.metadata["origin"]) == ("outbound", "Dari workflow Kapso", "sent", "external")
    await reconcile_echo(client.runtime, Job(job.id, job.kind, job.payload, job.workspace_id, None, 2, 8))
    assert await count(client, t.messages, workspace.ws, t.messages.c.provider_message_id == "wamid.WF") == 1


async def rows_jobs(client: Any, ws: str, kind: str) -> list[Any]:
    return await client.runtime.db.read(
        lambda conn: conn.execute(t.jobs.select().where(t.jobs.c.workspace_id == ws, t.jobs.c.kind == kind)).all()
    )


async def test_reaction_through_kapso(client, workspace, kapso):
    target = p.kapso_received(pnid=kapso.pnid, phone=PHONE, text="ini harganya")
    await post_kapso(client, kapso, target)
    reaction = {"type": "reaction", "reaction": {"message_id": target["message"]["id"], "emoji": "👍🏽"}}
    assert (await post_kapso(client, kapso, p.kapso_received(pnid=kapso.pnid, phone=PHONE, message=reaction))).status_code == 200
    m = await message(client, workspace.ws, target["message"]["id"])
    assert [r["emoji"] for r in m.reactions] == ["👍🏽"]
    assert await count(client, t.messages, workspace.ws) == 1


@pytest.mark.parametrize(
    "event",
    [
        "whatsapp.conversation.created",
        "whatsapp.conversation.ended",
        "whatsapp.conversation.inactive",
        "whatsapp.contact.identity_changed",
        "whatsapp.contact.marketing_preference_changed",
        "whatsapp.meta_business_agent.handover",
        "whatsapp.something.new",
    ],
)
async def test_events_kabar_does_not_use_are_acknowledged_and_kept(client, workspace, kapso, event):
    doc = {"conversation": {"id": "c1", "phone_number": PHONE, "status": "ended", "phone_number_id": kapso.pnid},
           "since_message": {"id": "m1"}, "inactivity": {"minutes": 60}, "phone_number_id": kapso.pnid}
    response = await post_kapso(client, kapso, doc, event)
    assert response.status_code == 200
    assert await receipts(client, workspace.ws) == ["ignored"]
    assert await count(client, t.messages, workspace.ws) == 0 and await count(client, t.contacts, workspace.ws) == 0


async def test_empty_batch_is_acknowledged(client, workspace, kapso):
    doc = {"type": "whatsapp.message.received", "batch": True, "data": [], "batch_info": {"size": 0}, "phone_number_id": kapso.pnid}
    # No item names the number: the body is kept unrouted (nothing to apply anyway).
    assert (await post_kapso(client, kapso, doc, batch=0)).status_code == 200


async def test_payload_v1_is_kept_as_failed(client, workspace, kapso):
    from kabar.observability import metrics

    before = metrics.WEBHOOKS_RECEIVED.labels("kapso", "failed")._value.get()
    doc = {"message": {"message_type": "text", "content": "halo"}, "whatsapp_config": {"phone_number_id": kapso.pnid}, "phone_number_id": kapso.pnid}
    raw = p.encode(doc)
    headers = {**p.kapso_headers(raw, kapso.webhook_secret, "whatsapp.message.received"), "x-webhook-payload-version": "v1"}
    response = await client.post("/webhooks/kapso", content=raw, headers=headers)
    assert response.status_code == 200
    [receipt] = await rows(client, t.webhook_receipts, workspace.ws)
    assert receipt.status == "failed" and "v1" in receipt.error and bytes(receipt.body) == raw
    assert metrics.WEBHOOKS_RECEIVED.labels("kapso", "failed")._value.get() == before + 1


async def test_profile_name_update_keeps_staff_name(client, workspace, kapso):
    await post_kapso(client, kapso, p.kapso_received(pnid=kapso.pnid, phone=PHONE, text="1", name="Budi"))
    [contact] = await rows(client, t.contacts, workspace.ws)
    await client.runtime.db.transaction(lambda uow: uow.conn.execute(t.contacts.update().where(t.contacts.c.id == contact.id).values(name="Pak Budi (VIP)")))
    await post_kapso(client, kapso, p.kapso_received(pnid=kapso.pnid, phone=PHONE, text="2", name="Budi S."))
    [contact] = await rows(client, t.contacts, workspace.ws)
    assert (contact.name, contact.profile_name) == ("Pak Budi (VIP)", "Budi S.")
    assert "budi s." in contact.search_text
    updated = [e for e in await rows(client, t.events, workspace.ws) if e.type == "contact.updated"]
    assert updated and updated[-1].data["profile_name"] == "Budi S."


async def test_inbound_message_reopens_a_closed_conversation(client, workspace, kapso):
    await post_kapso(client, kapso, p.kapso_received(pnid=kapso.pnid, phone=PHONE, text="1"))
    await client.runtime.db.transaction(lambda uow: uow.conn.execute(t.conversations.update().where(t.conversations.c.workspace_id == workspace.ws).values(status="closed", unread_count=0)))
    await post_kapso(client, kapso, p.kapso_received(pnid=kapso.pnid, phone=PHONE, text="2"))
    [conversation] = await rows(client, t.conversations, workspace.ws)
    assert (conversation.status, conversation.unread_count) == ("open", 1)


async def test_late_message_does_not_overwrite_a_newer_preview(client, workspace, kapso):
    await post_kapso(client, kapso, p.kapso_received(pnid=kapso.pnid, phone=PHONE, text="yang terbaru", ts=1767230300))
    await post_kapso(client, kapso, p.kapso_received(pnid=kapso.pnid, phone=PHONE, text="yang lama (dikirim ulang)", ts=1767230100))
    [conversation] = await rows(client, t.conversations, workspace.ws)
    assert conversation.last_message_preview == "yang terbaru" and conversation.unread_count == 2


async def test_long_text_and_emoji_sequences_are_kept_whole(client, workspace, kapso):
    family = "👨‍👩‍👧‍👦"
    text = "Salam dari Yogyakarta ꦱꦸꦒꦼꦁ " + family * 60  # past the preview length, made of ZWJ sequences
    await post_kapso(client, kapso, p.kapso_received(pnid=kapso.pnid, phone=PHONE, text=text))
    [m] = await rows(client, t.messages, workspace.ws)
    assert m.text == text
    [conversation] = await rows(client, t.conversations, workspace.ws)
    preview = conversation.last_message_preview
    assert len(preview) <= 200 and preview.endswith(family + "…")  # cut between graphemes


def test_normalised_events_round_trip_through_job_payloads():
    from kabar.channels.kapso import webhook
    from kabar.ingest.schemas import Event

    doc = p.kapso_received(pnid="pn1", phone=PHONE, text="halo", name="Budi")
    events = webhook.normalise(doc, {"x-webhook-event": "whatsapp.message.received"})
    assert msgspec.convert(msgspec.to_builtins(events), list[Event]) == events
