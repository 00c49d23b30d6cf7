"""ARI with a model: a fake OpenAI-compatible server on 127.0.0.1 (scripted replies, delays,
errors) stands in for Grok / Sea-Lion / OpenAI."""

from __future__ import annotations

from kabar.ari import rules
from kabar.db import tables as t
from tests.ari.support import Customer, Scripted, add_slots, enable_ari, kapso_channel, rows_of


def llm_config(server, **extra):
    return {"provider": "custom", "base_url": server.url + "/v1", "model": "fake-sealion", "api_key": "sk-test-123", **extra}


async def test_llm_journey_extracts_from_chat_and_books(client, tenant, server, jobs):
    fake = server.fake
    channel = await kapso_channel(tenant, server)
    await enable_ari(tenant, llm=llm_config(server), bot_name="ARI")
    await add_slots(tenant)
    response = await client.post(f"{tenant.base}/ari/knowledge", json={"title": "Beasiswa Australia Awards", "content": "Australia Awards menanggung biaya kuliah penuh."}, headers=tenant.owner.headers)
    assert response.status_code == 201
    customer = Customer(tenant, channel)

    # The model understands what the rules cannot ("negeri kanguru"); its JSON is merged.
    fake.extract(country="Australia", name=None)
    fake.reply("Selamat siang kak! Australia pilihan keren. Boleh tahu nama kakak?")
    (reply,) = await customer.say("halo, pengen kuliah di negeri kanguru nih")
    assert reply == "Selamat siang kak! Australia pilihan keren. Boleh tahu nama kakak?"
    assert (await customer.contact()).attributes["country"] == "Australia"

    extraction, chat = fake.requests[0], fake.requests[1]
    assert extraction["response_format"] == {"type": "json_object"} and extraction["model"] == "fake-sealion"
    assert "negeri kanguru" in extraction["messages"][-1]["content"]
    system = chat["messages"][0]["content"]
    assert "Kamu adalah ARI" in system and "Negara tujuan: Australia" in system
    assert "Australia Awards menanggung biaya kuliah penuh." in system  # knowledge entries are used
    assert rules.QUESTIONS["name"] in system  # the one question this turn must ask
    assert fake.headers[0]["Authorization"] == "Bearer sk-test-123"

    fake.extract(name="Budi Santoso", timeline="tahun depan", budget="300 juta", english_level="IELTS 7.0", ielts_score="7.0", email="budi@contoh.id")
    (reply,) = await customer.say("aku Budi Santoso, berangkat tahun depan, budget 300jt, ielts 7, email budi@contoh.id")
    assert reply == fake.default_reply
    fake.extract(documents={"passport": True, "cv": True, "transcript": True})
    (offer,) = await customer.say("paspor, cv, transkrip semua sudah siap")
    assert (await customer.ari())["state"] == "booking"
    assert offer == fake.default_reply  # the model words the offer
    (days,) = await customer.say("boleh")
    assert days.startswith("Jadwal konsultasi yang tersedia:")  # slot lists are exact, never generated
    (confirm,) = await customer.say("senin depan jam 2 siang")
    assert "pukul 14:00 WIB" in confirm
    (booked,) = await customer.say("ya betul")
    assert booked.startswith("Siap, konsultasi kakak sudah terjadwal")
    assert len(await rows_of(client, t.ari_appointments, tenant.ws)) == 1

    ari = await customer.ari()
    assert ari["model"] == "fake-sealion" and ari["state"] == "handoff"
    assistant = await rows_of(client, t.ari_transcript, tenant.ws, t.ari_transcript.c.role == "assistant", order=t.ari_transcript.c.created_at)
    assert assistant[0].model == "fake-sealion" and assistant[0].tokens_used == 70 and assistant[0].latency_ms is not None
    bot = await rows_of(client, t.messages, tenant.ws, t.messages.c.sender_type == "bot", order=t.messages.c.created_at)
    assert bot[0].metadata["ari"]["model"] == "fake-sealion"


async def test_history_sent_to_the_model_is_the_last_ten_turns(client, tenant, server, jobs):
    fake = server.fake
    channel = await kapso_channel(tenant, server)
    await enable_ari(tenant, llm=llm_config(server), handoff_after_messages=50)
    customer = Customer(tenant, channel)
    for i in range(8):
        fake.reply(f"balasan {i}")
        await customer.say(f"pesan {i}")
    last = fake.reply_requests[-1]["messages"]
    assert last[0]["role"] == "system"
    history = last[1:-1]
    assert len(history) == 10
    # The newest turns, in order (not the first ones: the original's stale-history bug).
    assert history[-1] == {"role": "assistant", "content": "balasan 6"}
    assert history[0] == {"role": "user", "content": "pesan 2"}
    assert last[-1] == {"role": "user", "content": "pesan 7"}


async def test_llm_timeout_sends_the_fallback_and_hands_off(client, tenant, server, jobs):
    fake = server.fake
    channel = await kapso_channel(tenant, server)
    await enable_ari(tenant, llm=llm_config(server, timeout_seconds=0.3, max_retries=1))
    customer = Customer(tenant, channel)
    fake.delay = 2.0
    replies = await customer.say("halo kak")
    assert replies == [rules.FALLBACK]
    assert len(fake.requests) == 2  # one retry, then give up
    ari = await customer.ari()
    assert (ari["state"], ari["handoff_reason"]) == ("handoff", "llm_error")
    assert (await customer.conversation()).ai_paused is True
    system = await rows_of(client, t.ari_transcript, tenant.ws, t.ari_transcript.c.role == "system")
    assert "timeout" in system[0].content
    (note,) = await rows_of(client, t.contact_notes, tenant.ws)
    assert note.author_type == "bot" and note.due_at is not None
    metrics = (await client.get("/metrics")).text
    assert 'kabar_ari_turns_total{outcome="fallback"}' in metrics and 'kabar_ari_llm_seconds_count{outcome="error"}' in metrics


async def test_llm_server_errors_never_reach_the_customer(client, tenant, server, jobs):
    fake = server.fake
    channel = await kapso_channel(tenant, server)
    await enable_ari(tenant, llm=llm_config(server, max_retries=2))
    customer = Customer(tenant, channel)
    fake.status = 500
    assert await customer.say("halo") == [rules.FALLBACK]
    assert len(fake.requests) == 3
    # A 401 (bad key) is not retried.
    other = Customer(tenant, channel)
    fake.status = 401
    fake.requests.clear()
    assert await other.say("halo") == [rules.FALLBACK]
    assert len(fake.requests) == 1


async def test_retry_recovers_from_one_failure(client, tenant, server, jobs):
    fake = server.fake
    channel = await kapso_channel(tenant, server)
    await enable_ari(tenant, llm=llm_config(server, max_retries=1))
    customer = Customer(tenant, channel)
    fake.extractions.append(Scripted("{}", status=503))
    fake.reply("Halo kak, boleh tahu namanya?")
    assert await customer.say("halo") == ["Halo kak, boleh tahu namanya?"]
    assert (await customer.ari())["state"] == "qualifying"


async def test_ab_split_sends_contacts_to_their_arm(client, tenant, server, jobs):
    from kabar.ari.llm import bucket

    fake = server.fake
    channel = await kapso_channel(tenant, server)
    config = llm_config(server, ab_split=50, alternate={"provider": "custom", "base_url": server.url, "model": "fake-grok", "api_key": "sk-b"})
    await enable_ari(tenant, llm=config)
    models = {}
    for _ in range(6):
        customer = Customer(tenant, channel)
        await customer.say("halo")
        models[customer.contact_id] = (await customer.ari())["model"]
    for contact_id, model in models.items():
        assert model == ("fake-sealion" if bucket(contact_id) < 50 else "fake-grok")
    used = {r["model"] for r in fake.requests}
    assert used <= {"fake-sealion", "fake-grok"}


async def test_unusable_extraction_json_falls_back_to_the_rules(client, tenant, server, jobs):
    fake = server.fake
    channel = await kapso_channel(tenant, server)
    await enable_ari(tenant, llm=llm_config(server))
    customer = Customer(tenant, channel)
    fake.extractions.append(Scripted("Maaf, saya tidak bisa membuat JSON."))
    fake.reply("Halo kak! Boleh tahu nama kakak?")
    assert await customer.say("halo, mau kuliah di Kanada") == ["Halo kak! Boleh tahu nama kakak?"]
    assert (await customer.contact()).attributes["country"] == "Canada"  # the rules still read it
    assert (await customer.ari())["state"] == "qualifying"
    (note,) = await rows_of(client, t.ari_transcript, tenant.ws, t.ari_transcript.c.role == "system")
    assert "extraction unusable" in note.content
