"""The inbox list: fields, order, filters, counts, validation, tenancy, member visibility."""

from __future__ import annotations

from datetime import timedelta

from kabar.db.types import utcnow

from tests.conversations.seed import seed_conversation
from tests.helpers import assert_problem


async def _list(tenant, caller=None, **params):
    response = await tenant.client.get(f"{tenant.base}/conversations", params=params, headers=(caller or tenant.owner).headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_list_rows_are_newest_first_with_contact_and_counts(client, tenant):
    now = utcnow()
    old = await seed_conversation(client, tenant.ws, name="Siti Lestari", tags=["vip"], last_message_at=now - timedelta(hours=2))
    new = await seed_conversation(client, tenant.ws, name="Agus Pratama", unread=2, last_message_at=now - timedelta(minutes=5))
    body = await _list(tenant)
    assert [row["id"] for row in body["data"]] == [new.conversation_id, old.conversation_id]
    assert body["total_count"] == 2 and body["unread_count"] == 1 and body["next_cursor"] is None
    row = body["data"][0]
    for field in ("id", "status", "assignee_id", "unread_count", "last_message_at", "last_message_preview", "ai_paused"):
        assert field in row
    assert row["unread_count"] == 2 and row["status"] == "open" and row["ai_paused"] is False
    assert row["last_message_at"].endswith("Z")
    assert row["contact"] == {
        "id": new.contact_id, "phone": new.phone, "whatsapp_user_id": None, "username": None, "name": "Agus Pratama",
        "profile_name": "Agus", "lead_status": "prospect", "lead_score": 0, "tags": [],
    }
    assert body["data"][1]["contact"]["tags"] == ["vip"]


async def test_filters_combine_and_repeat_as_any_of(client, tenant):
    agent = await tenant.add_user("member")
    a = await seed_conversation(client, tenant.ws, name="Andi", tags=["australia", "s2"], lead_status="hot_lead", unread=1)
    b = await seed_conversation(client, tenant.ws, name="Bayu", tags=["uk"], lead_status="client", status="pending", assignee_id=agent.user_id)
    c = await seed_conversation(client, tenant.ws, name="Citra", tags=[], lead_status="prospect", status="closed", unread=3)
    d = await seed_conversation(client, tenant.ws, name="Dewi", tags=["canada"], lead_status="lost", status="snoozed", assignee_id=tenant.owner.user_id)

    async def ids(**params):
        body = await _list(tenant, **params)
        assert body["total_count"] == len(body["data"])
        return {row["id"] for row in body["data"]}, body["unread_count"]

    assert await ids(unread="true") == ({a.conversation_id, c.conversation_id}, 2)
    assert await ids(status=["pending", "closed"]) == ({b.conversation_id, c.conversation_id}, 1)
    assert await ids(lead_status=["hot_lead", "lost"]) == ({a.conversation_id, d.conversation_id}, 1)
    assert await ids(tag=["uk", "canada"]) == ({b.conversation_id, d.conversation_id}, 0)
    assert await ids(tag="s2") == ({a.conversation_id}, 1)
    assert await ids(assignee_id="unassigned") == ({a.conversation_id, c.conversation_id}, 2)
    assert await ids(assignee_id=agent.user_id) == ({b.conversation_id}, 0)
    assert await ids(tag=["australia", "uk"], unread="true") == ({a.conversation_id}, 1)
    assert await ids(status="open", lead_status="client") == (set(), 0)


async def test_search_by_name_and_any_phone_form(client, tenant):
    hit = await seed_conversation(client, tenant.ws, name="Rina Wijaya", phone="+6281299887766")
    await seed_conversation(client, tenant.ws, name="Joko Nugroho", phone="+6281311112222")
    for q in ("rina", "WIJAYA", "0812-9988", "+62 812 9988 7766", "99887766"):
        body = await _list(tenant, q=q)
        assert [row["id"] for row in body["data"]] == [hit.conversation_id], q
        assert body["total_count"] == 1
    assert (await _list(tenant, q="100%_"))["data"] == []


async def test_invalid_filters_are_422_with_field_errors(client, tenant):
    response = await client.get(f"{tenant.base}/conversations", params={"status": ["open", "bogus"], "lead_status": "warm"}, headers=tenant.owner.headers)
    body = assert_problem(response, 422, "validation-error")
    assert {e["field"] for e in body["errors"]} == {"status", "lead_status"}
    response = await client.get(f"{tenant.base}/conversations", params={"limit": 0}, headers=tenant.owner.headers)
    assert [e["field"] for e in assert_problem(response, 422)["errors"]] == ["limit"]
    response = await client.get(f"{tenant.base}/conversations", params={"limit": 201}, headers=tenant.owner.headers)
    assert_problem(response, 422)
    response = await client.get(f"{tenant.base}/conversations", params={"cursor": "not-a-cursor"}, headers=tenant.owner.headers)
    assert_problem(response, 400)


async def test_other_workspace_and_anonymous(client, tenant, other_tenant):
    mine = await seed_conversation(client, tenant.ws)
    theirs = await seed_conversation(client, other_tenant.ws)
    body = await _list(tenant)
    assert [row["id"] for row in body["data"]] == [mine.conversation_id]
    # Another workspace's path is 404 for a stranger, whatever they ask for.
    assert_problem(await client.get(f"{other_tenant.base}/conversations", headers=tenant.owner.headers), 404)
    assert_problem(await client.get(f"{tenant.base}/conversations/{theirs.conversation_id}", headers=tenant.owner.headers), 404)
    assert_problem(await client.get(f"{tenant.base}/conversations"), 401)


async def test_member_sees_own_and_unassigned_only(client, tenant):
    member = await tenant.add_user("member")
    other = await tenant.add_user("member")
    mine = await seed_conversation(client, tenant.ws, assignee_id=member.user_id, unread=1)
    free = await seed_conversation(client, tenant.ws)
    hidden = await seed_conversation(client, tenant.ws, assignee_id=other.user_id, unread=4)
    body = await _list(tenant, member)
    assert {row["id"] for row in body["data"]} == {mine.conversation_id, free.conversation_id}
    assert body["total_count"] == 2 and body["unread_count"] == 1
    # Filters cannot widen what a member sees.
    assert (await _list(tenant, member, assignee_id=other.user_id))["data"] == []
    assert_problem(await client.get(f"{tenant.base}/conversations/{hidden.conversation_id}", headers=member.headers), 404)
    for role_caller in (tenant.owner, await tenant.add_user("admin"), await tenant.api_key()):
        assert (await _list(tenant, role_caller))["total_count"] == 3
