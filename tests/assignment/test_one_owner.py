"""One owner of a customer: whoever assigns (PATCH of a contact or a conversation, CSV import,
merge, member removal, a conversation created later by a webhook), the contact and its
conversation name the same assignee, a member can read both or neither, and the change is
announced as contact.updated + conversation.updated (with previous_assignee_id)."""

from __future__ import annotations

from typing import Any

from kabar.db import tables as t
from tests.ari.support import Customer
from tests.channels.support import configure
from tests.contacts.helpers import add_conversation, create_contact, events_of, rows
from tests.helpers import assert_problem, new_user


async def _assignees(client: Any, ws: str, contact_id: str) -> tuple[str | None, list[str | None]]:
    """(the contact's assignee, its conversations' assignees), read from the tables."""
    (contact,) = await rows(client, t.contacts, t.contacts.c.workspace_id == ws, t.contacts.c.id == contact_id)
    conversations = await rows(client, t.conversations, t.conversations.c.workspace_id == ws, t.conversations.c.contact_id == contact_id)
    return contact.assignee_id, [c.assignee_id for c in conversations]


async def _reads(tenant: Any, caller: Any, contact_id: str, conversation_id: str) -> tuple[int, int]:
    """What ``caller`` gets for the contact and for its conversation (status codes)."""
    contact = await tenant.client.get(f"{tenant.base}/contacts/{contact_id}", headers=caller.headers)
    conversation = await tenant.client.get(f"{tenant.base}/conversations/{conversation_id}", headers=caller.headers)
    return contact.status_code, conversation.status_code


async def _csv_import(tenant: Any, text: str) -> dict[str, Any]:
    response = await tenant.client.post(
        f"{tenant.base}/contacts/import",
        params={"dry_run": "false"},
        files={"file": ("contacts.csv", text.encode(), "text/csv")},
        headers=tenant.owner.headers,
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_csv_import_assigns_the_contact_and_its_conversation(client, tenant):
    # Before: the import wrote contacts.assignee_id only; the conversation stayed unassigned, so
    # another member opened the chat (200) and got 404 on its contact.
    ana, bob = await tenant.add_user("member"), await tenant.add_user("member")
    contact = await create_contact(tenant, phone="081290000001", name="Budi")
    conversation = await add_conversation(client, tenant.ws, contact["id"], ["halo"])
    seq = max([e.seq for e in await events_of(client, tenant.ws)], default=0)

    result = await _csv_import(tenant, f"phone,assignee_email\n081290000001,{ana.email}\n")
    assert result["updated"] == 1
    assert await _assignees(client, tenant.ws, contact["id"]) == (ana.user_id, [ana.user_id])
    assert await _reads(tenant, ana, contact["id"], conversation["id"]) == (200, 200)
    assert await _reads(tenant, bob, contact["id"], conversation["id"]) == (404, 404)

    # Ana's inbox lists it, counted; Bob's does not.
    mine = (await client.get(f"{tenant.base}/conversations", params={"assignee_id": ana.user_id}, headers=tenant.owner.headers)).json()
    assert [c["id"] for c in mine["data"]] == [conversation["id"]] and mine["total_count"] == 1
    theirs = (await client.get(f"{tenant.base}/conversations", headers=bob.headers)).json()
    assert theirs["data"] == [] and theirs["total_count"] == 0

    new = [e for e in await events_of(client, tenant.ws, "contact.updated", "conversation.updated") if e.seq > seq]
    updated = {e.type: e.data for e in new if e.data.get("assignee_id") == ana.user_id}
    assert updated["conversation.updated"]["id"] == conversation["id"]
    assert updated["contact.updated"]["id"] == contact["id"]


async def test_a_conversation_started_later_belongs_to_the_contact_s_owner(client, tenant):
    # Before: a contact imported (or created) with an assignee, who then wrote on WhatsApp, got an
    # unassigned conversation: every member saw the chat, only its owner the contact.
    ana, bob = await tenant.add_user("member"), await tenant.add_user("member")
    channel = await configure(tenant, "kapso")
    customer = Customer(tenant, channel)
    await _csv_import(tenant, f"phone,name,assignee_email\n{customer.phone},Sari,{ana.email}\n")
    await customer.send("halo kak")
    assert await _assignees(client, tenant.ws, customer.contact_id) == (ana.user_id, [ana.user_id])
    assert await _reads(tenant, bob, customer.contact_id, customer.conversation_id) == (404, 404)
    created = [e for e in await events_of(client, tenant.ws, "conversation.created") if e.data["id"] == customer.conversation_id]
    assert created and created[0].data["assignee_id"] == ana.user_id


async def test_merge_leaves_one_owner(client, tenant):
    # Before: the kept contact (Ana's, no chat) took over the merged contact's unassigned chat,
    # which stayed unassigned: Bob could read the chat of a contact he could not open.
    ana, bob = await tenant.add_user("member"), await tenant.add_user("member")
    keep = await create_contact(tenant, phone="081290000011", assignee_id=ana.user_id)
    gone = await create_contact(tenant, phone="081290000012")
    conversation = await add_conversation(client, tenant.ws, gone["id"], ["halo", "ya"])

    response = await client.post(f"{tenant.base}/contacts/merge", json={"keep_id": keep["id"], "merge_id": gone["id"]}, headers=tenant.owner.headers)
    assert response.status_code == 200, response.text
    assert response.json()["assignee_id"] == ana.user_id
    assert await _assignees(client, tenant.ws, keep["id"]) == (ana.user_id, [ana.user_id])
    assert await _reads(tenant, bob, keep["id"], conversation["id"]) == (404, 404)
    assert await _reads(tenant, ana, keep["id"], conversation["id"]) == (200, 200)
    last = [e.data for e in await events_of(client, tenant.ws, "conversation.updated") if e.data["id"] == conversation["id"]][-1]
    assert last["assignee_id"] == ana.user_id


async def test_patch_of_either_side_moves_both_and_tells_the_previous_owner(client, tenant):
    ana, bob = await tenant.add_user("member"), await tenant.add_user("member")
    contact = await create_contact(tenant, phone="081290000021")
    conversation = await add_conversation(client, tenant.ws, contact["id"], ["halo"])
    contact_url, conversation_url = f"{tenant.base}/contacts/{contact['id']}", f"{tenant.base}/conversations/{conversation['id']}"

    response = await client.patch(contact_url, json={"assignee_id": ana.user_id}, headers=tenant.owner.headers)
    assert response.status_code == 200 and response.json()["assignee_id"] == ana.user_id
    assert await _assignees(client, tenant.ws, contact["id"]) == (ana.user_id, [ana.user_id])

    response = await client.patch(conversation_url, json={"assignee_id": bob.user_id}, headers=tenant.owner.headers)
    assert response.status_code == 200 and response.json()["assignee_id"] == bob.user_id
    assert await _assignees(client, tenant.ws, contact["id"]) == (bob.user_id, [bob.user_id])
    assert await _reads(tenant, ana, contact["id"], conversation["id"]) == (404, 404)
    assert await _reads(tenant, bob, contact["id"], conversation["id"]) == (200, 200)
    # Ana's open inbox learns she lost it: both events name her as the previous assignee.
    moved = [e for e in await events_of(client, tenant.ws, "contact.updated", "conversation.updated") if e.data.get("assignee_id") == bob.user_id]
    assert {e.type for e in moved} == {"contact.updated", "conversation.updated"}
    assert all(e.data["previous_assignee_id"] == ana.user_id for e in moved)

    # Someone who is not a member: 422, nothing changed.
    outsider = (await new_user(client)).user_id  # a Kabar user, not in this workspace
    for url in (contact_url, conversation_url):
        problem = assert_problem(await client.patch(url, json={"assignee_id": outsider}, headers=tenant.owner.headers), 422)
        assert problem["errors"][0]["field"] == "assignee_id"
    assert await _assignees(client, tenant.ws, contact["id"]) == (bob.user_id, [bob.user_id])


async def test_member_removal_unassigns_both_with_events(client, tenant):
    # Before: raw UPDATEs of both tables and no contact/conversation event at all.
    ana = await tenant.add_user("member")
    contact = await create_contact(tenant, phone="081290000031")
    conversation = await add_conversation(client, tenant.ws, contact["id"], ["halo"])
    response = await client.patch(f"{tenant.base}/conversations/{conversation['id']}", json={"assignee_id": ana.user_id}, headers=tenant.owner.headers)
    assert response.status_code == 200
    seq = max(e.seq for e in await events_of(client, tenant.ws))

    response = await client.delete(f"{tenant.base}/members/{ana.user_id}", headers=tenant.owner.headers)
    assert response.status_code == 204, response.text
    assert await _assignees(client, tenant.ws, contact["id"]) == (None, [None])
    new = [e for e in await events_of(client, tenant.ws) if e.seq > seq]
    by_type = {e.type: e for e in new}
    assert by_type["contact.updated"].data["assignee_id"] is None and by_type["contact.updated"].contact_id == contact["id"]
    assert by_type["conversation.updated"].data["id"] == conversation["id"] and by_type["conversation.updated"].data["assignee_id"] is None
    assert by_type["conversation.updated"].data["previous_assignee_id"] == ana.user_id
    # The refetch agrees with what the events said.
    assert (await client.get(f"{tenant.base}/conversations/{conversation['id']}", headers=tenant.owner.headers)).json() == {
        k: v for k, v in by_type["conversation.updated"].data.items() if k != "previous_assignee_id"
    }
