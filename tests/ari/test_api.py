"""The ARI configuration API (API.md): validation, permissions, tenancy, secrets."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from kabar.db import tables as t
from kabar.db.types import utcnow
from tests.ari.support import Customer, enable_ari, kapso_channel, rows_of
from tests.helpers import assert_problem


async def test_config_defaults_update_and_secret_handling(client, tenant):
    response = await client.get(f"{tenant.base}/ari/config", headers=tenant.owner.headers)
    assert response.status_code == 200
    body = response.json()
    assert (body["enabled"], body["bot_name"], body["mode"], body["llm"]) == (False, "ARI", "rules", None)

    llm = {"provider": "grok", "model": "grok-3", "api_key": "xai-secret-key-123", "ab_split": 70}
    response = await client.put(
        f"{tenant.base}/ari/config",
        json={"enabled": True, "bot_name": "Rina", "greeting_style": "casual", "community_link": "https://chat.whatsapp.com/x", "llm": llm},
        headers=tenant.owner.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["enabled"] and body["bot_name"] == "Rina" and body["mode"] == "llm"
    assert body["llm"]["api_key_set"] is True and body["llm"]["ab_split"] == 70
    assert "xai-secret-key-123" not in response.text

    # Stored encrypted, never returned; a later PUT without api_key keeps it.
    row = (await rows_of(client, t.ari_configs, tenant.ws))[0]
    assert b"xai-secret-key-123" not in bytes(row.llm_api_key) and "xai-secret-key-123" not in str(row.llm)
    response = await client.put(f"{tenant.base}/ari/config", json={"llm": {"provider": "grok", "model": "grok-4"}}, headers=tenant.owner.headers)
    assert response.json()["llm"]["api_key_set"] is True and response.json()["llm"]["model"] == "grok-4"
    assert response.json()["bot_name"] == "Rina"  # omitted fields keep their value
    response = await client.put(f"{tenant.base}/ari/config", json={"llm": {"provider": "grok", "model": "grok-4", "api_key": None}}, headers=tenant.owner.headers)
    assert response.json()["llm"]["api_key_set"] is False
    response = await client.put(f"{tenant.base}/ari/config", json={"llm": None}, headers=tenant.owner.headers)
    assert response.json()["mode"] == "rules"

    events = [e.type for e in await rows_of(client, t.events, tenant.ws)]
    assert "ari.config_updated" in events


async def test_config_validation(client, tenant):
    bad = [
        {"greeting_style": "shouty"},
        {"bot_name": ""},
        {"community_link": "not a url"},
        {"llm": {"provider": "custom", "model": "m"}},  # custom needs base_url
        {"llm": {"provider": "openai", "model": "m", "ab_split": 101}},
        {"reply_delay_ms": -1},
        {"unknown": 1},
    ]
    for body in bad:
        response = await client.put(f"{tenant.base}/ari/config", json=body, headers=tenant.owner.headers)
        assert_problem(response, 422)
    assert (await rows_of(client, t.ari_configs, tenant.ws)) == []


async def test_members_read_but_only_owners_and_admins_manage(client, tenant):
    member = await tenant.add_user("member")
    admin = await tenant.add_user("admin")
    assert (await client.get(f"{tenant.base}/ari/config", headers=member.headers)).status_code == 200
    assert (await client.get(f"{tenant.base}/ari/scoring", headers=member.headers)).status_code == 200
    assert_problem(await client.put(f"{tenant.base}/ari/config", json={"enabled": True}, headers=member.headers), 403)
    assert_problem(await client.post(f"{tenant.base}/ari/knowledge", json={"title": "x", "content": "y"}, headers=member.headers), 403)
    assert (await client.put(f"{tenant.base}/ari/config", json={"enabled": True}, headers=admin.headers)).status_code == 200


async def test_scoring_weights_must_sum_to_100_and_hot_above_warm(client, tenant):
    url = f"{tenant.base}/ari/scoring"
    body = (await client.get(url, headers=tenant.owner.headers)).json()
    assert body == {"hot_threshold": 70, "warm_threshold": 40, "weights": {"basic": 25, "qualification": 35, "documents": 30, "engagement": 10}, "is_default": True}
    problem = assert_problem(await client.put(url, json={"weights": {"basic": 30, "qualification": 35, "documents": 30, "engagement": 10}}, headers=tenant.owner.headers), 422)
    assert problem["errors"][0]["field"] == "weights" and "105" in problem["errors"][0]["message"]
    problem = assert_problem(await client.put(url, json={"hot_threshold": 40, "warm_threshold": 40}, headers=tenant.owner.headers), 422)
    assert problem["errors"][0]["field"] == "hot_threshold"
    assert_problem(await client.put(url, json={"hot_threshold": 0}, headers=tenant.owner.headers), 422)
    response = await client.put(url, json={"hot_threshold": 80, "weights": {"basic": 40, "qualification": 40, "documents": 10, "engagement": 10}}, headers=tenant.owner.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"hot_threshold": 80, "warm_threshold": 40, "weights": {"basic": 40, "qualification": 40, "documents": 10, "engagement": 10}, "is_default": False}
    response = await client.put(url, json={"warm_threshold": 50}, headers=tenant.owner.headers)
    assert response.json()["hot_threshold"] == 80 and response.json()["weights"]["basic"] == 40


async def test_configured_weights_drive_the_live_score(client, tenant, server, jobs):
    channel = await kapso_channel(tenant, server)
    await enable_ari(tenant)
    weights = {"basic": 100, "qualification": 0, "documents": 0, "engagement": 0}
    response = await client.put(f"{tenant.base}/ari/scoring", json={"hot_threshold": 90, "warm_threshold": 10, "weights": weights}, headers=tenant.owner.headers)
    assert response.status_code == 200
    customer = Customer(tenant, channel)
    await customer.say("halo, mau kuliah di Australia")
    ari = await customer.ari()
    # Basic: 1 of 6 fields (3 of 15) + country 5 = 8 of 25 → 32 of 100; nothing else counts.
    assert ari["lead_score"] == 32 and ari["lead_temperature"] == "warm"
    assert ari["score_breakdown"]["engagement_score"] == 0


async def test_flow_stages_crud_with_defaults(client, tenant):
    url = f"{tenant.base}/ari/flow-stages"
    body = (await client.get(url, headers=tenant.owner.headers)).json()
    assert body["is_default"] is True and [s["name"] for s in body["data"]][:2] == ["Greeting", "Qualifying"]
    first = (await client.post(url, json={"name": "Sapa", "goal": "Menyapa"}, headers=tenant.owner.headers)).json()
    second = (await client.post(url, json={"name": "Tanya", "goal": "Bertanya"}, headers=tenant.owner.headers)).json()
    assert (first["stage_order"], second["stage_order"]) == (0, 1)
    response = await client.patch(f"{url}/{second['id']}", json={"goal": "Kualifikasi", "is_active": False}, headers=tenant.owner.headers)
    assert response.status_code == 200 and response.json()["goal"] == "Kualifikasi" and response.json()["is_active"] is False
    assert_problem(await client.patch(f"{url}/{second['id']}", json={"name": ""}, headers=tenant.owner.headers), 422)
    assert (await client.delete(f"{url}/{first['id']}", headers=tenant.owner.headers)).status_code == 204
    body = (await client.get(url, headers=tenant.owner.headers)).json()
    assert body["is_default"] is False and [(s["name"], s["stage_order"]) for s in body["data"]] == [("Tanya", 0)]
    assert_problem(await client.delete(f"{url}/{first['id']}", headers=tenant.owner.headers), 404)


async def test_knowledge_crud_and_tenancy(client, tenant, other_tenant):
    url = f"{tenant.base}/ari/knowledge"
    response = await client.post(url, json={"title": "Biaya", "content": "Mulai 300 juta", "category": "FAQ"}, headers=tenant.owner.headers)
    assert response.status_code == 201, response.text
    entry = response.json()
    response = await client.patch(f"{url}/{entry['id']}", json={"content": "Mulai 350 juta"}, headers=tenant.owner.headers)
    assert response.json()["content"] == "Mulai 350 juta"
    assert [e["id"] for e in (await client.get(url, headers=tenant.owner.headers)).json()["data"]] == [entry["id"]]
    # Another workspace's id is simply not found.
    other = f"{other_tenant.base}/ari/knowledge/{entry['id']}"
    assert_problem(await client.patch(other, json={"content": "x"}, headers=other_tenant.owner.headers), 404)
    assert_problem(await client.delete(other, headers=other_tenant.owner.headers), 404)
    assert (await client.get(f"{other_tenant.base}/ari/knowledge", headers=other_tenant.owner.headers)).json()["data"] == []
    assert_problem(await client.get(url, headers=other_tenant.owner.headers), 404)
    assert_problem(await client.post(url, json={"title": "", "content": "x"}, headers=tenant.owner.headers), 422)
    assert (await client.delete(f"{url}/{entry['id']}", headers=tenant.owner.headers)).status_code == 204


async def test_slots_validation(client, tenant, other_tenant):
    url = f"{tenant.base}/ari/slots"
    ok = {"day_of_week": 0, "start_time": "09:00", "end_time": "12:00", "duration_minutes": 60}
    response = await client.post(url, json=ok, headers=tenant.owner.headers)
    assert response.status_code == 201, response.text
    slot = response.json()
    assert slot["booking_window_days"] == 14 and slot["consultant_id"] is None
    assert_problem(await client.post(url, json=ok, headers=tenant.owner.headers), 409)
    assert_problem(await client.post(url, json={**ok, "end_time": "08:00"}, headers=tenant.owner.headers), 422)
    assert_problem(await client.post(url, json={**ok, "start_time": "13:00", "end_time": "13:30"}, headers=tenant.owner.headers), 422)
    assert_problem(await client.post(url, json={**ok, "day_of_week": 7}, headers=tenant.owner.headers), 422)
    assert_problem(await client.post(url, json={**ok, "start_time": "25:00"}, headers=tenant.owner.headers), 422)
    problem = assert_problem(await client.post(url, json={**ok, "start_time": "13:00", "end_time": "15:00", "consultant_id": other_tenant.owner.user_id}, headers=tenant.owner.headers), 422)
    assert problem["errors"][0]["field"] == "consultant_id"
    consultant = await tenant.add_user("member")
    response = await client.post(url, json={**ok, "consultant_id": consultant.user_id}, headers=tenant.owner.headers)
    assert response.status_code == 201  # another consultant may have the same time
    response = await client.patch(f"{url}/{slot['id']}", json={"end_time": "10:00"}, headers=tenant.owner.headers)
    assert response.status_code == 200 and response.json()["end_time"] == "10:00"
    assert_problem(await client.patch(f"{url}/{slot['id']}", json={"end_time": "09:00"}, headers=tenant.owner.headers), 422)
    assert len((await client.get(url, headers=tenant.owner.headers)).json()["data"]) == 2


async def test_appointments_list_patch_and_conversation_state(client, tenant, server, jobs):
    channel = await kapso_channel(tenant, server)
    await enable_ari(tenant)
    customer = Customer(tenant, channel)
    await customer.say("halo")
    body = await customer.ari()
    assert body["state"] == "qualifying" and body["model"] == "rules"
    assert set(body) >= {"state", "lead_score", "lead_temperature", "score_breakdown", "model", "handoff_reason"}
    at = utcnow() + timedelta(days=2)

    def book(uow):
        uow.conn.execute(
            t.ari_appointments.insert().values(
                id="appt-" + customer.contact_id[-12:], workspace_id=tenant.ws, conversation_id=customer.conversation_id,
                contact_id=customer.contact_id, scheduled_at=at, duration_minutes=60, status="scheduled", booking_key="k1",
                created_at=uow.now, updated_at=uow.now,
            )
        )

    await client.runtime.db.transaction(book)
    url = f"{tenant.base}/ari/appointments"
    listed = (await client.get(url, params={"from": utcnow().isoformat(), "to": (at + timedelta(hours=1)).isoformat()}, headers=tenant.owner.headers)).json()
    assert [a["contact_id"] for a in listed["data"]] == [customer.contact_id]
    assert (await client.get(url, params={"from": (at + timedelta(hours=1)).isoformat()}, headers=tenant.owner.headers)).json()["data"] == []
    assert_problem(await client.get(url, params={"from": "yesterday"}, headers=tenant.owner.headers), 422)
    appointment_id = listed["data"][0]["id"]
    assert_problem(await client.patch(f"{url}/{appointment_id}", json={"status": "lost"}, headers=tenant.owner.headers), 422)
    response = await client.patch(f"{url}/{appointment_id}", json={"status": "cancelled"}, headers=tenant.owner.headers)
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    (row,) = await rows_of(client, t.ari_appointments, tenant.ws)
    assert row.booking_key is None  # the seat is free again
    assert_problem(await client.patch(f"{url}/{appointment_id}", json={"status": "scheduled"}, headers=tenant.owner.headers), 422)
    # Members see appointments of conversations they may see.
    member = await tenant.add_user("member")
    assert len((await client.get(url, headers=member.headers)).json()["data"]) == 1
    response = await client.patch(f"{tenant.base}/conversations/{customer.conversation_id}", json={"assignee_id": tenant.owner.user_id}, headers=tenant.owner.headers)
    assert response.status_code == 200
    assert (await client.get(url, headers=member.headers)).json()["data"] == []
    assert_problem(await client.get(f"{tenant.base}/conversations/{customer.conversation_id}/ari", headers=member.headers), 404)


async def test_conversation_ari_of_an_unknown_or_foreign_conversation(client, tenant, other_tenant, server, jobs):
    channel = await kapso_channel(tenant, server)
    await enable_ari(tenant)
    customer = Customer(tenant, channel)
    await customer.say("halo")
    assert_problem(await client.get(f"{other_tenant.base}/conversations/{customer.conversation_id}/ari", headers=other_tenant.owner.headers), 404)
    assert_problem(await client.get(f"{tenant.base}/conversations/nope/ari", headers=tenant.owner.headers), 404)


async def test_demo_seed_turns_ari_on_in_rules_mode(client):
    from kabar.demo import DEMO_SLUG, seed_demo

    await seed_demo(client.runtime, contacts=3)
    ws = await client.runtime.db.read(lambda conn: conn.execute(select(t.workspaces.c.id).where(t.workspaces.c.slug == DEMO_SLUG)).scalar_one())
    (config,) = await rows_of(client, t.ari_configs, ws)
    assert config.enabled and not (config.llm or {}).get("model")
    assert len(await rows_of(client, t.ari_slots, ws)) >= 5
    assert len(await rows_of(client, t.ari_knowledge, ws)) >= 3


async def test_the_settings_form_may_send_empty_strings_for_no_link(client, tenant):
    body = {"enabled": True, "community_link": "", "llm": {"provider": "grok", "model": "grok-3", "base_url": "", "ab_split": 100}}
    response = await client.put(f"{tenant.base}/ari/config", json=body, headers=tenant.owner.headers)
    assert response.status_code == 200, response.text
    assert response.json()["community_link"] is None and response.json()["llm"]["base_url"] is None
