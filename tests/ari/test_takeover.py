"""A human takeover stops ARI: a staff reply or an assignment to a person sets ``ai_paused``
(announced as conversation.updated) and ARI stays quiet there until someone turns it back on.
Customers write through real signed Kapso webhooks; ARI runs rule-based; sends go to the fake
server on 127.0.0.1."""

from __future__ import annotations

from typing import Any

from kabar.db import tables as t
from tests.ari.support import Customer, add_slots, enable_ari, kapso_channel, rows_of, settle
from tests.helpers import assert_problem


async def _reply(tenant: Any, conversation_id: str, text: str, caller: Any = None, **extra: Any) -> dict[str, Any]:
    response = await tenant.client.post(
        f"{tenant.base}/conversations/{conversation_id}/messages", json={"type": "text", "text": text, **extra}, headers=(caller or tenant.owner).headers
    )
    assert response.status_code == 202, response.text
    return response.json()


async def _conversation(tenant: Any, conversation_id: str) -> dict[str, Any]:
    response = await tenant.client.get(f"{tenant.base}/conversations/{conversation_id}", headers=tenant.owner.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_staff_reply_pauses_ari_until_it_is_resumed(client, tenant, server, jobs):
    # Before: ai_paused stayed false after a human reply and ARI answered every later message.
    channel = await kapso_channel(tenant, server)
    await enable_ari(tenant)
    customer = Customer(tenant, channel)
    assert len(await customer.say("halo kak, mau tanya kuliah di Australia")) == 1
    assert (await _conversation(tenant, customer.conversation_id))["ai_paused"] is False  # ARI's own reply pauses nothing

    await _reply(tenant, customer.conversation_id, "Halo kak, saya Dewi, saya bantu langsung ya")
    assert (await _conversation(tenant, customer.conversation_id))["ai_paused"] is True
    updates = [e for e in await rows_of(client, t.events, tenant.ws, t.events.c.type == "conversation.updated", order=t.events.c.seq) if e.data["id"] == customer.conversation_id]
    assert updates[-1].data["ai_paused"] is True
    assert await customer.say("Budi Santoso", "tahun depan", "sekitar 300 juta", "IELTS 7.0") == []

    response = await client.patch(f"{tenant.base}/conversations/{customer.conversation_id}", json={"ai_paused": False}, headers=tenant.owner.headers)
    assert response.status_code == 200 and response.json()["ai_paused"] is False
    assert len(await customer.say("budi@contoh.id")) == 1


async def test_a_reply_job_queued_before_the_takeover_sends_nothing(client, tenant, server, jobs):
    channel = await kapso_channel(tenant, server)
    await enable_ari(tenant, reply_delay_ms=1500)
    customer = Customer(tenant, channel)
    await customer.send("halo, mau tanya")  # ARI's turn is queued, due in 1.5 s
    await _reply(tenant, customer.conversation_id, "Halo, dengan Dewi di sini")
    await settle(client, tenant.ws)
    assert await customer.bot_texts() == []


async def test_assigning_a_person_pauses_ari_and_unassigning_does_not(client, tenant, server, jobs):
    channel = await kapso_channel(tenant, server)
    await enable_ari(tenant)
    agent = await tenant.add_user("member")
    customer = Customer(tenant, channel)
    assert len(await customer.say("halo kak")) == 1
    url = f"{tenant.base}/conversations/{customer.conversation_id}"

    response = await client.patch(url, json={"assignee_id": agent.user_id}, headers=tenant.owner.headers)
    assert response.status_code == 200 and response.json()["ai_paused"] is True
    assert await customer.say("Budi Santoso") == []

    response = await client.patch(url, json={"assignee_id": None, "ai_paused": False}, headers=tenant.owner.headers)
    assert response.status_code == 200 and response.json()["ai_paused"] is False
    assert len(await customer.say("tahun depan")) == 1
    # The same through the contact.
    response = await client.patch(f"{tenant.base}/contacts/{customer.contact_id}", json={"assignee_id": agent.user_id}, headers=tenant.owner.headers)
    assert response.status_code == 200
    assert (await _conversation(tenant, customer.conversation_id))["ai_paused"] is True


async def test_an_api_key_pauses_ari_unless_it_sends_as_a_bot(client, tenant, server, jobs):
    channel = await kapso_channel(tenant, server)
    await enable_ari(tenant)
    key = await tenant.api_key()
    customer = Customer(tenant, channel)
    assert len(await customer.say("halo kak")) == 1

    sent = await _reply(tenant, customer.conversation_id, "Info otomatis: kantor buka 09.00", key, sender_type="bot")
    assert sent["sender_type"] == "bot"
    assert (await _conversation(tenant, customer.conversation_id))["ai_paused"] is False
    assert len(await customer.say("Budi Santoso")) == 1

    # A person may not pretend to be a bot; nothing is sent.
    response = await client.post(
        f"{tenant.base}/conversations/{customer.conversation_id}/messages",
        json={"type": "text", "text": "x", "sender_type": "bot"},
        headers=tenant.owner.headers,
    )
    assert assert_problem(response, 422)["errors"][0]["field"] == "sender_type"

    await _reply(tenant, customer.conversation_id, "Halo, ini tim kami", key)  # an integration speaking for staff
    assert (await _conversation(tenant, customer.conversation_id))["ai_paused"] is True
    assert await customer.say("tahun depan") == []


async def test_a_handoff_to_the_booked_consultant_assigns_the_customer(client, tenant, server, jobs):
    # ARI's handoff goes through kabar.assignment: contact and conversation name the consultant
    # (announced with their events), and another member sees neither.
    from tests.ari.test_journeys import JOURNEY

    channel = await kapso_channel(tenant, server)
    await enable_ari(tenant)
    consultant, colleague = await tenant.add_user("member"), await tenant.add_user("member")
    await add_slots(tenant, consultant_id=consultant.user_id)
    customer = Customer(tenant, channel)
    for text in [*JOURNEY, "mau", "senin depan jam 2 siang", "ya"]:
        await customer.say(text)
    assert (await customer.ari())["handoff_reason"] == "appointment_booked"
    contact, conversation = await customer.contact(), await customer.conversation()
    assert (contact.assignee_id, conversation.assignee_id, conversation.ai_paused) == (consultant.user_id, consultant.user_id, True)
    for url in (f"{tenant.base}/contacts/{customer.contact_id}", f"{tenant.base}/conversations/{customer.conversation_id}"):
        assert (await client.get(url, headers=colleague.headers)).status_code == 404
        assert (await client.get(url, headers=consultant.headers)).status_code == 200
    announced = {e.type for e in await rows_of(client, t.events, tenant.ws) if (e.data or {}).get("assignee_id") == consultant.user_id}
    assert {"contact.updated", "conversation.updated"} <= announced


async def test_a_reply_from_the_whatsapp_business_app_pauses_ari(client, tenant, server, jobs):
    # Before: an echo of a staff reply typed in the WhatsApp Business app (origin business_app) was
    # stored but left ai_paused false, and ARI answered the customer's next message.
    from kabar.channels.fake import payloads as p
    from tests.channels.support import post_kapso

    channel = await kapso_channel(tenant, server)
    await enable_ari(tenant)
    customer = Customer(tenant, channel)
    assert len(await customer.say("halo kak, mau tanya kuliah di Australia")) == 1
    wamid = p.new_wamid()
    status = p.meta_status(wamid, "sent", customer.phone.lstrip("+"), int(__import__("time").time()))
    echo = p.kapso_outbound(pnid=channel.pnid, phone=customer.phone, wamid=wamid, statuses=[status],
                            message={"type": "text", "text": {"body": "Halo, saya Dewi dari HP kantor"}}, origin="business_app")
    assert (await post_kapso(client, channel, echo, "whatsapp.message.sent")).status_code == 200
    assert (await _conversation(tenant, customer.conversation_id))["ai_paused"] is True
    assert await customer.say("Budi Santoso") == []
