"""Booking: no double booking, whether the seat goes while the customer decides or while ARI
is writing its answer."""

from __future__ import annotations

from kabar.ari import service
from kabar.db import tables as t
from kabar.db.types import utcnow
from tests.ari.support import Customer, add_slots, enable_ari, kapso_channel, rows_of

QUALIFIED = {
    "form_answers": {"country": "Australia", "budget": "400 juta", "timeline": "tahun ini", "english_level": "IELTS 7.5"},
    "documents": {"passport": True, "cv": True, "english_test": True, "transcript": True},
}


async def qualified_customer(tenant, channel, name: str) -> Customer:
    """A lead whose form already answered everything: the first message gets the offer."""
    customer = Customer(tenant, channel, name=name)
    body = {"phone": customer.phone, "name": f"{name} Pratama", "email": f"{name.lower()}@contoh.id", "attributes": QUALIFIED}
    response = await tenant.client.post(f"{tenant.base}/contacts", json=body, headers=tenant.owner.headers)
    assert response.status_code == 201, response.text
    (offer,) = await customer.say("halo kak")
    assert offer.startswith("Selamat") and "konsultasi 1-on-1" in offer
    return customer


async def test_two_customers_one_seat(client, tenant, server, jobs):
    channel = await kapso_channel(tenant, server)
    await enable_ari(tenant)
    await add_slots(tenant, days=[0], start="14:00", end="15:00")  # one Monday seat per week
    ani = await qualified_customer(tenant, channel, "Ani")
    bayu = await qualified_customer(tenant, channel, "Bayu")
    for customer in (ani, bayu):
        (confirm,) = await customer.say("mau, senin depan jam 2 siang")
        assert confirm.startswith("Jadi konsultasinya Senin")
    (booked,) = await ani.say("ya")
    assert booked.startswith("Siap, konsultasi kakak sudah terjadwal")
    (taken,) = await bayu.say("ya")
    assert taken.startswith("Maaf kak, jadwal itu baru saja terisi.")
    assert (await bayu.ari())["state"] == "scheduling"
    appointments = await rows_of(client, t.ari_appointments, tenant.ws)
    assert [a.contact_id for a in appointments] == [ani.contact_id]
    # The next Monday is gone; ARI says so and offers the Monday after.
    (listing,) = await bayu.say("senin depan")
    assert "tidak ada jadwal kosong" in listing and listing.count("Senin") == 2


async def test_seat_taken_while_ari_is_answering(client, tenant, server, jobs):
    channel = await kapso_channel(tenant, server)
    await enable_ari(tenant)
    await add_slots(tenant, days=[0], start="14:00", end="15:00")
    dewi = await qualified_customer(tenant, channel, "Dewi")
    await dewi.say("boleh, senin depan jam 2 siang")
    await enable_ari(tenant, reply_delay_ms=60_000)  # keep the queued job out of the way: we run the turn by hand
    (message_id,) = await dewi.send("ya")

    runtime = client.runtime
    now = utcnow()
    loaded = await runtime.db.read(service.load_turn, tenant.ws, dewi.conversation_id, message_id, runtime.cipher, now)
    inp = service.turn_input(loaded, now)
    result = await service.run_llm(loaded, inp)
    assert result.decision.book is not None
    slot = result.decision.book

    def someone_else_books(uow):
        from kabar.ari.booking import seat_key

        uow.conn.execute(
            t.ari_appointments.insert().values(
                id="appt-other", workspace_id=tenant.ws, conversation_id=dewi.conversation_id, contact_id=dewi.contact_id,
                slot_id=slot.slot_id, scheduled_at=slot.start, duration_minutes=60, status="scheduled",
                booking_key=seat_key(slot.slot_id, slot.start, 0), notes="booked by staff", created_at=uow.now, updated_at=uow.now,
            )
        )

    await runtime.db.transaction(someone_else_books)
    assert await runtime.db.transaction(service.apply_turn, loaded, inp, result) is True
    texts = await dewi.bot_texts()
    assert texts[-1].startswith("Maaf kak, jadwal itu baru saja terisi.")
    assert [a.id for a in await rows_of(client, t.ari_appointments, tenant.ws)] == ["appt-other"]
    # The queued job for the same message finds it answered and does nothing.
    assert await service.process_turn(runtime, tenant.ws, dewi.conversation_id, message_id) is False
    assert await runtime.db.transaction(service.apply_turn, loaded, inp, result) is False  # a replay writes nothing


async def test_no_slots_configured_hands_the_hot_lead_to_a_human(client, tenant, server, jobs):
    channel = await kapso_channel(tenant, server)
    await enable_ari(tenant)
    customer = Customer(tenant, channel, name="Eka")
    body = {"phone": customer.phone, "name": "Eka Putri", "email": "eka@contoh.id", "attributes": QUALIFIED}
    assert (await client.post(f"{tenant.base}/contacts", json=body, headers=tenant.owner.headers)).status_code == 201
    (reply,) = await customer.say("halo")
    assert "jadwal konsultasi sedang penuh" in reply
    ari = await customer.ari()
    assert (ari["state"], ari["handoff_reason"]) == ("handoff", "no_slots")
