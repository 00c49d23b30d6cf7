"""GET …/contacts/by-phone: the bots' context lookup."""

from __future__ import annotations

from datetime import timedelta

import pytest
from kabar.db.types import utcnow
from tests.contacts.helpers import add_conversation, create_contact
from tests.helpers import assert_problem, queries

FORMATS = [
    "+6281234567890",
    "6281234567890",
    "081234567890",
    "0812-3456-7890",
    "+62 812 3456 7890",
    "(0812) 3456 7890",
    "812 3456 7890",
    "+62 (812) 3456-7890",
]


def context_statements(client) -> int:
    """SQLite: the contact, its notes, its messages; PostgreSQL: the same in one statement (one
    round trip). Never more than the 4 indexed queries of the hot-path rule, credentials included."""
    return 3 if client.runtime.db.is_sqlite else 1


async def _context(client, tenant, caller, phone):
    response = await client.get(f"{tenant.base}/contacts/by-phone", params={"phone": phone}, headers=caller.headers)
    assert response.status_code == 200, response.text
    return response


async def test_every_phone_format_finds_the_contact(client, tenant):
    contact = await create_contact(tenant, phone="081234567890", name="Budi")
    key = await tenant.api_key()
    for phone in FORMATS:
        body = (await _context(client, tenant, key, phone)).json()
        assert body["found"] is True, phone
        assert body["contact"]["id"] == contact["id"]
    unknown = (await _context(client, tenant, key, "+6281299998888")).json()
    assert unknown == {"found": False}


async def test_response_shape_with_notes_and_messages(client, tenant):
    contact = await create_contact(tenant, phone="+6285700001111", name="Siti", email="siti@contoh.id", tags=["uk"], lead_score=55)
    base = f"{tenant.base}/contacts/{contact['id']}"
    for i in range(7):
        response = await client.post(f"{base}/notes", json={"content": f"note {i}"}, headers=tenant.owner.headers)
        assert response.status_code == 201
    start = utcnow() - timedelta(hours=2)
    conversation = await add_conversation(client, tenant.ws, contact["id"], [f"msg {i}" for i in range(14)], start=start)

    response = await _context(client, tenant, tenant.owner, "0857-0000-1111")
    body = response.json()
    assert set(body) == {"found", "contact", "notes", "last_interaction_at", "recent_messages"}
    assert body["found"] is True
    assert body["contact"] == {
        "id": contact["id"],
        "phone": "+6285700001111",
        "name": "Siti",
        "profile_name": None,
        "email": "siti@contoh.id",
        "lead_status": "prospect",
        "lead_score": 55,
        "tags": ["uk"],
        "assignee_id": None,
        "is_returning": False,
        "first_contact_at": None,
    }
    assert [n["content"] for n in body["notes"]] == ["note 6", "note 5", "note 4", "note 3", "note 2"]
    assert set(body["notes"][0]) == {"id", "content", "created_at"}
    assert [m["text"] for m in body["recent_messages"]] == [f"msg {i}" for i in range(13, 3, -1)]
    assert body["recent_messages"][0] == {
        "id": conversation["message_ids"][13],
        "direction": "outbound",
        "type": "text",
        "text": "msg 13",
        "created_at": body["recent_messages"][0]["created_at"],
    }
    assert body["recent_messages"][1]["direction"] == "inbound"
    assert body["last_interaction_at"] is None  # set by ingest; none happened here
    # The owner's session was resolved by the requests before: only the context's statements ran.
    assert queries(response) == context_statements(client)


async def test_contact_without_conversation_or_notes(client, tenant):
    await create_contact(tenant, phone="081288887777")
    key = await tenant.api_key()
    first = await _context(client, tenant, key, "081288887777")
    assert queries(first) == 1 + context_statements(client)  # the key, then the context
    response = await _context(client, tenant, key, "081288887777")
    body = response.json()
    assert body["found"] is True and body["notes"] == [] and body["recent_messages"] == []
    assert queries(response) == context_statements(client)  # the key was resolved a moment ago
    unknown = await _context(client, tenant, key, "081288880000")
    assert unknown.json() == {"found": False}
    assert queries(unknown) == 1


async def test_member_gets_found_false_for_others_contacts(client, tenant):
    member = await tenant.add_user("member")
    colleague = await tenant.add_user("member")
    await create_contact(tenant, phone="081211110001", assignee_id=colleague.user_id)
    await create_contact(tenant, phone="081211110002", assignee_id=member.user_id)
    await create_contact(tenant, phone="081211110003")
    assert (await _context(client, tenant, member, "081211110001")).json() == {"found": False}
    assert (await _context(client, tenant, member, "081211110002")).json()["found"] is True
    assert (await _context(client, tenant, member, "081211110003")).json()["found"] is True
    assert (await _context(client, tenant, colleague, "081211110001")).json()["found"] is True


@pytest.mark.parametrize("phone", ["", "abc", "12", "+62", "x" * 80])
async def test_invalid_phone_is_422(client, tenant, phone):
    response = await client.get(f"{tenant.base}/contacts/by-phone", params={"phone": phone}, headers=tenant.owner.headers)
    body = assert_problem(response, 422)
    assert body["errors"][0]["field"] == "phone"


async def test_missing_phone_and_other_workspace(client, tenant, other_tenant):
    assert_problem(await client.get(f"{tenant.base}/contacts/by-phone", headers=tenant.owner.headers), 422)
    await create_contact(other_tenant, phone="081233334444")
    # Our key in their workspace: the workspace does not exist for us.
    key = await tenant.api_key()
    theirs = await client.get(f"{other_tenant.base}/contacts/by-phone", params={"phone": "081233334444"}, headers=key.headers)
    assert_problem(theirs, 404)
    ours = await _context(client, tenant, key, "081233334444")
    assert ours.json() == {"found": False}

