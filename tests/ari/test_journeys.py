"""Golden conversations in Indonesian, driven by real signed Kapso webhooks, answered by ARI
through the real send path; with no model (rules) and with a fake OpenAI-compatible model."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from kabar.ari import rules
from kabar.ari.dates import JAKARTA
from kabar.db import tables as t
from kabar.db.types import utcnow
from tests.ari.support import Customer, add_slots, enable_ari, kapso_channel, rows_of, settle
from tests.channels.support import wait_for

JOURNEY = [
    "Halo kak, mau tanya kuliah di Australia",
    "Nama saya Budi Santoso",
    "tahun depan",
    "sekitar 300 juta",
    "IELTS 7.0",
    "budi@contoh.id",
    "sudah punya",
    "sudah",
    "ada",
]


def next_week_monday_2pm() -> datetime:
    today = utcnow().astimezone(JAKARTA).date()
    monday = today - timedelta(days=today.weekday()) + timedelta(days=7)
    return datetime(monday.year, monday.month, monday.day, 14, 0, tzinfo=JAKARTA)


async def test_rules_journey_from_first_message_to_booking(client, tenant, server, jobs):
    channel = await kapso_channel(tenant, server)
    await enable_ari(tenant, bot_name="Rina")
    slots = await add_slots(tenant)
    budi = Customer(tenant, channel)

    replies = await budi.say(JOURNEY[0])
    assert len(replies) == 1
    assert "Saya Rina" in replies[0] and "Australia" in replies[0] and replies[0].endswith(rules.QUESTIONS["name"])
    assert (await budi.ari())["state"] == "qualifying"

    expected_questions = ["timeline", "budget", "english_level", "email", "doc:passport", "doc:cv", "doc:transcript"]
    for text, question in zip(JOURNEY[1:-1], expected_questions, strict=True):
        (reply,) = await budi.say(text)
        assert reply.endswith(rules.QUESTIONS[question]), (text, reply)

    (offer,) = await budi.say(JOURNEY[-1])
    assert "konsultasi 1-on-1" in offer and offer.endswith("Mau saya bantu jadwalkan?")
    ari = await budi.ari()
    assert ari["state"] == "booking" and ari["lead_temperature"] == "hot"
    assert ari["lead_score"] >= 90 and ari["score_breakdown"]["document_score"] == 30
    assert ari["model"] == "rules"

    contact = await budi.contact()
    assert contact.name == "Budi Santoso" and contact.email == "budi@contoh.id"
    assert contact.attributes["country"] == "Australia"
    assert contact.attributes["budget"] == "300 juta" and contact.attributes["english_level"] == "IELTS 7.0"
    assert contact.attributes["documents"] == {"passport": True, "cv": True, "english_test": True, "transcript": True}
    assert (contact.lead_status, contact.lead_score) == ("hot_lead", ari["lead_score"])

    (days,) = await budi.say("mau")
    assert days.startswith("Jadwal konsultasi yang tersedia:")
    (confirm,) = await budi.say("senin depan jam 2 siang")
    when = next_week_monday_2pm()
    assert f"{when.day} " in confirm and "pukul 14:00 WIB" in confirm and confirm.startswith("Jadi konsultasinya Senin")
    (booked,) = await budi.say("ya")
    assert booked.startswith("Siap, konsultasi kakak sudah terjadwal: Senin") and "14:00 WIB" in booked

    (appointment,) = await rows_of(client, t.ari_appointments, tenant.ws)
    assert appointment.scheduled_at == when
    assert appointment.status == "scheduled" and appointment.contact_id == budi.contact_id
    assert appointment.slot_id == slots[0]["id"]  # Monday's pattern
    ari = await budi.ari()
    assert ari["state"] == "handoff" and ari["handoff_reason"] == "appointment_booked"
    assert ari["appointment_id"] == appointment.id
    conversation = await budi.conversation()
    assert conversation.ai_paused is True
    (note,) = await rows_of(client, t.contact_notes, tenant.ws, t.contact_notes.c.contact_id == budi.contact_id)
    assert note.author_type == "bot" and note.due_at == when and "Budi Santoso" in note.content and "Australia" in note.content
    assert "1on1" in (await budi.contact()).tags

    # Every bot reply is a real outbound message that the send job delivered.
    bot = await rows_of(client, t.messages, tenant.ws, t.messages.c.sender_type == "bot")
    assert len(bot) == 12 and all(m.direction == "outbound" for m in bot)
    await wait_for(lambda: _all_sent(client, tenant.ws))
    transcript = await rows_of(client, t.ari_transcript, tenant.ws, order=t.ari_transcript.c.created_at)
    assert [r.role for r in transcript[:4]] == ["user", "assistant", "user", "assistant"]
    assert transcript[0].content == JOURNEY[0]

    # The event log tells the inbox what happened.
    types = [e.type for e in await rows_of(client, t.events, tenant.ws)]
    for kind in ("ari.state_changed", "ari.handoff", "appointment.created", "note.created", "conversation.updated"):
        assert kind in types

    # Handed off: ARI stays quiet now.
    assert await budi.say("terima kasih kak") == []


async def _all_sent(client, ws) -> bool:
    bot = await rows_of(client, t.messages, ws, t.messages.c.sender_type == "bot")
    return all(m.status in ("sent", "delivered", "read") for m in bot)


async def test_cold_lead_gets_the_community_link_and_a_follow_up(client, tenant, server, jobs):
    channel = await kapso_channel(tenant, server)
    await enable_ari(tenant, community_link="https://chat.whatsapp.com/AbcKomunitas")
    await add_slots(tenant)
    sari = Customer(tenant, channel, name="Sari")
    for text in ["halo", "Sari Lestari", "Jepang", "3 tahun lagi", "belum ada", "belum tes", "sari@contoh.id", "belum", "belum", "belum"]:
        last = await sari.say(text)
    assert len(last) == 2
    assert "https://chat.whatsapp.com/AbcKomunitas" in last[0]
    assert last[1] == rules.HANDOFF_MESSAGES["cold_lead_community_sent"]
    ari = await sari.ari()
    assert (ari["state"], ari["lead_temperature"], ari["handoff_reason"]) == ("handoff", "cold", "cold_lead_community_sent")
    contact = await sari.contact()
    assert contact.lead_status == "cold_lead" and "community" in contact.tags
    (note,) = await rows_of(client, t.contact_notes, tenant.ws)
    assert note.due_at - utcnow() > timedelta(days=29)  # follow up in 30 days
    assert (await sari.conversation()).ai_paused is True


async def test_customer_asks_for_a_human(client, tenant, server, jobs):
    channel = await kapso_channel(tenant, server)
    await enable_ari(tenant)
    customer = Customer(tenant, channel)
    await customer.say("halo")
    (reply,) = await customer.say("saya mau bicara dengan konsultan saja")
    assert reply == rules.HANDOFF_MESSAGES["customer_request"]
    ari = await customer.ari()
    assert ari["handoff_reason"] == "customer_request"
    handoffs = [e for e in await rows_of(client, t.events, tenant.ws) if e.type == "ari.handoff"]
    assert handoffs and handoffs[0].data["conversation_id"] == customer.conversation_id


async def test_takeover_stops_ari(client, tenant, server, jobs):
    channel = await kapso_channel(tenant, server)
    await enable_ari(tenant)
    customer = Customer(tenant, channel)
    assert len(await customer.say("halo kak")) == 1
    response = await client.patch(f"{tenant.base}/conversations/{customer.conversation_id}", json={"ai_paused": True}, headers=tenant.owner.headers)
    assert response.status_code == 200, response.text
    assert await customer.say("Budi", "masih ada orang?") == []
    jobs_rows = await rows_of(client, t.jobs, tenant.ws, t.jobs.c.kind == "ari.reply")
    assert len(jobs_rows) == 1  # paused conversations do not even queue a turn
    # A turn already queued when the human takes over says nothing either.
    await enable_ari(tenant, reply_delay_ms=3000)
    other = Customer(tenant, channel)
    await other.send("halo, mau tanya")
    response = await client.patch(f"{tenant.base}/conversations/{other.conversation_id}", json={"ai_paused": True}, headers=tenant.owner.headers)
    assert response.status_code == 200
    await settle(client, tenant.ws)
    assert await other.bot_texts() == []


async def test_disabled_ari_and_non_text_messages_do_nothing(client, tenant, server, jobs):
    channel = await kapso_channel(tenant, server)
    customer = Customer(tenant, channel)
    assert await customer.say("halo") == []  # no config at all
    await enable_ari(tenant, enabled=False)
    assert await customer.say("halo") == []
    assert await rows_of(client, t.jobs, tenant.ws, t.jobs.c.kind == "ari.reply") == []


async def test_a_burst_of_three_messages_gets_one_ordered_reply(client, tenant, server, jobs):
    channel = await kapso_channel(tenant, server)
    await enable_ari(tenant, reply_delay_ms=1500)
    customer = Customer(tenant, channel)
    ids = await customer.send("halo kak", "nama saya Dewi Kusuma", "mau kuliah ke Kanada")
    await settle(client, tenant.ws)
    replies = await customer.bot_texts()
    assert len(replies) == 1
    assert "Dewi" in replies[0] and replies[0].endswith(rules.QUESTIONS["timeline"])
    transcript = await rows_of(client, t.ari_transcript, tenant.ws, order=t.ari_transcript.c.created_at)
    assert [r.role for r in transcript] == ["user", "user", "user", "assistant"]
    assert [r.metadata["message_id"] for r in transcript[:3]] == ids
    assert len(await rows_of(client, t.jobs, tenant.ws, t.jobs.c.kind == "ari.reply")) == 3  # two found nothing to do
    contact = await customer.contact()
    assert contact.name == "Dewi Kusuma" and contact.attributes["country"] == "Canada"


async def test_stuck_conversation_is_handed_off(client, tenant, server, jobs):
    channel = await kapso_channel(tenant, server)
    await enable_ari(tenant, handoff_after_messages=3)
    customer = Customer(tenant, channel)
    await customer.say("halo")
    for text in ["hmm", "???", "wkwk"]:
        (reply,) = await customer.say(text)
        assert reply != rules.HANDOFF_MESSAGES["auto_handoff_stuck"]
    (reply,) = await customer.say("oke")
    assert reply == rules.HANDOFF_MESSAGES["auto_handoff_stuck"]
    state = await customer.state_row()
    assert (state.state, state.handoff_reason) == ("handoff", "auto_handoff_stuck")


async def test_a_status_set_by_a_human_is_never_overwritten(client, tenant, server, jobs):
    channel = await kapso_channel(tenant, server)
    await enable_ari(tenant)
    customer = Customer(tenant, channel)
    await customer.say("halo")
    response = await client.patch(f"{tenant.base}/contacts/{customer.contact_id}", json={"lead_status": "client"}, headers=tenant.owner.headers)
    assert response.status_code == 200, response.text
    await customer.say("Budi Santoso")
    await customer.say("ke Australia tahun ini, budget 500 juta, IELTS 7.5")
    contact = await customer.contact()
    assert contact.lead_status == "client" and contact.lead_status_set_by == "human"
    assert contact.lead_score == (await customer.ari())["lead_score"] > 40


async def test_form_data_on_the_contact_counts_and_is_not_asked_again(client, tenant, server, jobs):
    channel = await kapso_channel(tenant, server)
    await enable_ari(tenant)
    customer = Customer(tenant, channel)
    await customer.send("halo")  # creates the contact (and ARI greets)
    await settle(client, tenant.ws)
    response = await client.patch(
        f"{tenant.base}/contacts/{customer.contact_id}",
        json={"name": "Andi Wijaya", "attributes": {"form_answers": {"country": "United Kingdom", "budget": "400 juta"}}},
        headers=tenant.owner.headers,
    )
    assert response.status_code == 200, response.text
    (reply,) = await customer.say("saya mau berangkat tahun depan")
    assert reply.endswith(rules.QUESTIONS["english_level"])  # name, country, budget known; timeline just given
    ari = await customer.ari()
    assert "Negara tujuan: United Kingdom" in ari["score_reasons"]


async def test_reminder_one_hour_before_is_sent_once(client, tenant, server, jobs):
    from kabar.ari.service import send_reminders

    channel = await kapso_channel(tenant, server)
    await enable_ari(tenant)
    customer = Customer(tenant, channel)
    await customer.say("halo")
    at = utcnow() + timedelta(minutes=50)

    def book(uow):
        uow.conn.execute(
            t.ari_appointments.insert().values(
                id="appt-" + customer.contact_id[-12:], workspace_id=tenant.ws, conversation_id=customer.conversation_id,
                contact_id=customer.contact_id, scheduled_at=at, duration_minutes=60, status="scheduled",
                booking_key="manual", meeting_link="https://meet.example/abc", created_at=uow.now, updated_at=uow.now,
            )
        )

    await client.runtime.db.transaction(book)
    before = len(await customer.bot_texts())
    assert await send_reminders(client.runtime) >= 1
    assert await send_reminders(client.runtime) == 0
    texts = (await customer.bot_texts())[before:]
    assert len(texts) == 1 and texts[0].startswith("Pengingat") and at.astimezone(JAKARTA).strftime("%H:%M WIB") in texts[0]
    assert "https://meet.example/abc" in texts[0]
    (appointment,) = await rows_of(client, t.ari_appointments, tenant.ws)
    assert appointment.reminder_sent_at is not None and appointment.status == "confirmed"


async def test_the_reminder_sweep_runs_as_a_periodic_job(client, jobs):
    j = t.jobs
    stmt = select(j.c.status).where(j.c.workspace_id.is_(None), j.c.kind == "ari.reminders")
    statuses = await client.runtime.db.read(lambda conn: conn.execute(stmt).scalars().all())
    assert "queued" in statuses or "running" in statuses
