"""POST …/contacts/merge: one person from two contacts."""

from __future__ import annotations

from datetime import timedelta

from kabar.db import tables as t
from kabar.db.types import utcnow
from tests.contacts.helpers import add_conversation, create_contact, events_of, rows
from tests.helpers import assert_problem


async def _merge(client, tenant, keep_id, merge_id, caller=None):
    return await client.post(
        f"{tenant.base}/contacts/merge", json={"keep_id": keep_id, "merge_id": merge_id}, headers=(caller or tenant.owner).headers
    )


async def test_merge_moves_conversation_messages_and_notes(client, tenant):
    member = await tenant.add_user("member")
    keep = await create_contact(tenant, phone="081270000001", tags=["vip"], lead_score=30, attributes={"city": "Bandung", "intake": "2026"})
    gone = await create_contact(
        tenant, phone="081270000002", name="Budi", email="budi@contoh.id", tags=["uk", "vip"], lead_score=80,
        lead_status="hot_lead", assignee_id=member.user_id, attributes={"city": "Jakarta", "budget": 300},
    )
    now = utcnow()
    kept_conv = await add_conversation(client, tenant.ws, keep["id"], ["a1", "a2", "a3"], start=now - timedelta(hours=5), unread=1)
    gone_conv = await add_conversation(client, tenant.ws, gone["id"], ["b1", "b2"], start=now - timedelta(hours=1), unread=2)
    for who, content in ((keep, "kept note"), (gone, "moved note")):
        response = await client.post(f"{tenant.base}/contacts/{who['id']}/notes", json={"content": content}, headers=tenant.owner.headers)
        assert response.status_code == 201

    response = await _merge(client, tenant, keep["id"], gone["id"])
    assert response.status_code == 200, response.text
    merged = response.json()
    assert merged["id"] == keep["id"] and merged["phone"] == "+6281270000001"
    assert (merged["name"], merged["email"]) == ("Budi", "budi@contoh.id")  # empty fields filled
    assert merged["tags"] == ["vip", "uk"]
    assert merged["lead_score"] == 80 and merged["lead_status"] == "hot_lead"  # keep was a plain prospect
    assert merged["attributes"] == {"city": "Bandung", "intake": "2026", "budget": 300}
    assert merged["assignee_id"] == member.user_id
    assert (await client.get(f"{tenant.base}/contacts/{keep['id']}", headers=tenant.owner.headers)).json() == merged
    assert_problem(await client.get(f"{tenant.base}/contacts/{gone['id']}", headers=tenant.owner.headers), 404)

    conversations = await rows(client, t.conversations, t.conversations.c.workspace_id == tenant.ws)
    assert [c.id for c in conversations] == [kept_conv["id"]]
    conv = conversations[0]
    assert conv.contact_id == keep["id"] and conv.unread_count == 3
    assert conv.last_message_at == gone_conv["last_message_at"] and conv.last_message_preview == "b2"
    assert conv.last_inbound_at == gone_conv["last_inbound_at"]
    messages = await rows(client, t.messages, t.messages.c.workspace_id == tenant.ws)
    assert len(messages) == 5
    assert {(m.conversation_id, m.contact_id) for m in messages} == {(kept_conv["id"], keep["id"])}

    notes = (await client.get(f"{tenant.base}/contacts/{keep['id']}/notes", headers=tenant.owner.headers)).json()["data"]
    assert [n["content"] for n in notes if n["note_type"] == "note"] == ["moved note", "kept note"]
    merge_notes = [n for n in notes if n["note_type"] == "merge"]
    assert len(merge_notes) == 1 and "+6281270000002" in merge_notes[0]["content"]
    assert merge_notes[0]["metadata"]["merged_contact"]["id"] == gone["id"]

    # The bot's view shows the whole history under the kept phone; the merged phone is free.
    context = (await client.get(f"{tenant.base}/contacts/by-phone", params={"phone": "081270000001"}, headers=tenant.owner.headers)).json()
    assert [m["text"] for m in context["recent_messages"]] == ["b2", "b1", "a3", "a2", "a1"]
    assert (await client.get(f"{tenant.base}/contacts/by-phone", params={"phone": "081270000002"}, headers=tenant.owner.headers)).json() == {"found": False}
    # Searchable under the merged name now.
    found = (await client.get(f"{tenant.base}/contacts", params={"q": "budi"}, headers=tenant.owner.headers)).json()["data"]
    assert [c["id"] for c in found] == [keep["id"]]

    types = [e.type for e in await events_of(client, tenant.ws)]
    for expected in ("contact.merged", "contact.deleted", "conversation.deleted", "conversation.updated", "note.created"):
        assert expected in types
    updated = (await events_of(client, tenant.ws, "conversation.updated"))[-1]
    assert updated.data["id"] == kept_conv["id"] and updated.data["contact"]["id"] == keep["id"]


async def test_merge_moves_the_only_conversation(client, tenant):
    keep = await create_contact(tenant, phone="081270000011", name="Kept", lead_status="client", lead_score=90)
    gone = await create_contact(tenant, phone="081270000012", name="Gone", lead_status="hot_lead", lead_score=10)
    conv = await add_conversation(client, tenant.ws, gone["id"], ["x1", "x2"])
    merged = (await _merge(client, tenant, keep["id"], gone["id"])).json()
    assert (merged["name"], merged["lead_status"], merged["lead_score"]) == ("Kept", "client", 90)
    conversations = await rows(client, t.conversations, t.conversations.c.workspace_id == tenant.ws)
    assert [(c.id, c.contact_id) for c in conversations] == [(conv["id"], keep["id"])]
    assert {m.contact_id for m in await rows(client, t.messages, t.messages.c.workspace_id == tenant.ws)} == {keep["id"]}


async def test_merge_refusals(client, tenant, other_tenant):
    keep = await create_contact(tenant, phone="081270000021")
    theirs = await create_contact(other_tenant, phone="081270000022")
    assert_problem(await _merge(client, tenant, keep["id"], theirs["id"]), 404)
    assert_problem(await _merge(client, tenant, theirs["id"], keep["id"]), 404)
    assert_problem(await _merge(client, tenant, keep["id"], keep["id"]), 422)
    assert_problem(await _merge(client, tenant, keep["id"], "no-such-id"), 404)
    bad = await client.post(f"{tenant.base}/contacts/merge", json={"keep_id": keep["id"]}, headers=tenant.owner.headers)
    assert_problem(bad, 422)
    # Nothing changed on either side.
    assert (await client.get(f"{other_tenant.base}/contacts/{theirs['id']}", headers=other_tenant.owner.headers)).status_code == 200
    assert len(await rows(client, t.contacts, t.contacts.c.workspace_id == tenant.ws)) == 1
    key = await tenant.api_key()
    other = await create_contact(tenant, phone="081270000023")
    assert (await _merge(client, tenant, keep["id"], other["id"], caller=key)).status_code == 200
