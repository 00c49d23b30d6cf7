"""GET one conversation, PATCH (status, assignee, AI pause, snooze) and mark-read, with events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from kabar.db import tables as t
from kabar.db.types import utcnow

from tests.conversations.seed import seed_conversation
from tests.helpers import assert_problem


async def events_of(client, ws, type_=None):
    def read(conn):  # noqa: ANN001, ANN202
        stmt = select(t.events).where(t.events.c.workspace_id == ws).order_by(t.events.c.seq)
        if type_:
            stmt = stmt.where(t.events.c.type == type_)
        return conn.execute(stmt).all()

    return await client.runtime.db.read(read)


async def jobs_of(client, ws, kind):
    def read(conn):  # noqa: ANN001, ANN202
        stmt = select(t.jobs).where(t.jobs.c.workspace_id == ws, t.jobs.c.kind == kind)
        return conn.execute(stmt.order_by(t.jobs.c.created_at, t.jobs.c.id)).all()  # in the order they were queued

    return await client.runtime.db.read(read)


async def test_get_one(client, tenant):
    seeded = await seed_conversation(client, tenant.ws, name="Putri Kusuma", tags=["s1"])
    response = await client.get(f"{tenant.base}/conversations/{seeded.conversation_id}", headers=tenant.owner.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == seeded.conversation_id and body["contact"]["name"] == "Putri Kusuma"
    assert body["last_inbound_at"] is not None and body["snoozed_until"] is None
    assert_problem(await client.get(f"{tenant.base}/conversations/nope", headers=tenant.owner.headers), 404)


async def test_patch_status_assignee_ai_paused_emits_event(client, tenant):
    agent = await tenant.add_user("member")
    seeded = await seed_conversation(client, tenant.ws)
    url = f"{tenant.base}/conversations/{seeded.conversation_id}"
    response = await client.patch(url, json={"status": "pending", "assignee_id": agent.user_id, "ai_paused": True}, headers=tenant.owner.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["assignee_id"], body["ai_paused"]) == ("pending", agent.user_id, True)
    events = await events_of(client, tenant.ws, "conversation.updated")
    assert len(events) == 1 and events[0].contact_id == seeded.contact_id
    # The event is the conversation as a GET shows it, plus who owned it before (kabar.assignment).
    assert events[0].data == {**body, "previous_assignee_id": None}
    # Unassign with null; an empty patch changes nothing and emits nothing.
    response = await client.patch(url, json={"assignee_id": None}, headers=tenant.owner.headers)
    assert response.json()["assignee_id"] is None
    assert (await client.patch(url, json={}, headers=tenant.owner.headers)).status_code == 200
    assert len(await events_of(client, tenant.ws, "conversation.updated")) == 2


async def test_patch_validation(client, tenant, other_tenant):
    seeded = await seed_conversation(client, tenant.ws)
    url = f"{tenant.base}/conversations/{seeded.conversation_id}"
    h = tenant.owner.headers

    async def fields(body):
        return {e["field"] for e in assert_problem(await client.patch(url, json=body, headers=h), 422)["errors"]}

    assert await fields({"assignee_id": other_tenant.owner.user_id}) == {"assignee_id"}
    assert await fields({"status": "snoozed"}) == {"snoozed_until"}
    past = (utcnow() - timedelta(minutes=1)).isoformat()
    assert await fields({"status": "snoozed", "snoozed_until": past}) == {"snoozed_until"}
    assert await fields({"snoozed_until": (utcnow() + timedelta(hours=1)).isoformat()}) == {"snoozed_until"}
    assert await fields({"status": "handover"}) == {"status"}
    assert await fields({"ai_paused": "yes"}) == {"ai_paused"}
    assert await fields({"status": "snoozed", "snoozed_until": "2030-01-01T10:00:00"}) == {"snoozed_until"}  # no offset
    assert await fields({"status": "snoozed", "assignee_id": "someone"}) == {"snoozed_until", "assignee_id"}
    assert_problem(await client.patch(url, json={"colour": "red"}, headers=h), 422)
    # Nothing was changed by any of these.
    body = (await client.get(url, headers=h)).json()
    assert (body["status"], body["assignee_id"]) == ("open", None)
    assert await events_of(client, tenant.ws, "conversation.updated") == []


async def test_snooze_then_wake_job(client, tenant):
    seeded = await seed_conversation(client, tenant.ws)
    url = f"{tenant.base}/conversations/{seeded.conversation_id}"
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    response = await client.patch(url, json={"status": "snoozed", "snoozed_until": until.isoformat()}, headers=tenant.owner.headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "snoozed"
    assert datetime.fromisoformat(response.json()["snoozed_until"]) == until
    jobs = await jobs_of(client, tenant.ws, "conversation.wake")
    assert len(jobs) == 1 and jobs[0].run_at == until
    # The wake-up reopens it; run the service directly rather than wait a day.
    from kabar.conversations.service import wake_snoozed

    await client.runtime.db.transaction(wake_snoozed, tenant.ws, seeded.conversation_id, until)
    body = (await client.get(url, headers=tenant.owner.headers)).json()
    assert (body["status"], body["snoozed_until"]) == ("open", None)
    # Leaving snoozed by hand clears the time; a stale wake-up then does nothing.
    await client.patch(url, json={"status": "snoozed", "snoozed_until": until.isoformat()}, headers=tenant.owner.headers)
    await client.patch(url, json={"status": "closed"}, headers=tenant.owner.headers)
    await client.runtime.db.transaction(wake_snoozed, tenant.ws, seeded.conversation_id, until)
    body = (await client.get(url, headers=tenant.owner.headers)).json()
    assert (body["status"], body["snoozed_until"]) == ("closed", None)


async def test_mark_read(client, tenant):
    seeded = await seed_conversation(client, tenant.ws, unread=3)
    url = f"{tenant.base}/conversations/{seeded.conversation_id}/read"
    response = await client.post(url, headers=tenant.owner.headers)
    assert response.status_code == 200 and response.json()["unread_count"] == 0
    assert (await client.post(url, headers=tenant.owner.headers)).json()["unread_count"] == 0
    assert len(await events_of(client, tenant.ws, "conversation.updated")) == 1  # the second changed nothing


async def test_roles_and_visibility_on_changes(client, tenant, other_tenant):
    member = await tenant.add_user("member")
    other = await tenant.add_user("member")
    admin = await tenant.add_user("admin")
    key = await tenant.api_key()
    own = await seed_conversation(client, tenant.ws, assignee_id=member.user_id, unread=1)
    hidden = await seed_conversation(client, tenant.ws, assignee_id=other.user_id, unread=1)
    theirs = await seed_conversation(client, other_tenant.ws, unread=1)
    for caller in (tenant.owner, admin, member, key):
        response = await client.patch(f"{tenant.base}/conversations/{own.conversation_id}", json={"ai_paused": caller is member}, headers=caller.headers)
        assert response.status_code == 200, (caller, response.text)
        assert (await client.post(f"{tenant.base}/conversations/{own.conversation_id}/read", headers=caller.headers)).status_code == 200
    hidden_url = f"{tenant.base}/conversations/{hidden.conversation_id}"
    assert_problem(await client.patch(hidden_url, json={"status": "closed"}, headers=member.headers), 404)
    assert_problem(await client.post(f"{hidden_url}/read", headers=member.headers), 404)
    # Another workspace's conversation through this workspace's path: 404, untouched.
    assert_problem(await client.patch(f"{tenant.base}/conversations/{theirs.conversation_id}", json={"status": "closed"}, headers=tenant.owner.headers), 404)
    assert_problem(await client.post(f"{tenant.base}/conversations/{theirs.conversation_id}/read", headers=tenant.owner.headers), 404)
    body = (await client.get(f"{other_tenant.base}/conversations/{theirs.conversation_id}", headers=other_tenant.owner.headers)).json()
    assert (body["status"], body["unread_count"]) == ("open", 1)


async def test_one_owner_per_customer_conversation_and_contact_assignee_move_together(client, tenant):
    """Assigning the conversation assigns its contact, and the other way round: a member who is
    given a customer sees both the conversation and the contact panel, another member neither."""
    agent = await tenant.add_user("member")
    other = await tenant.add_user("member")
    seeded = await seed_conversation(client, tenant.ws)
    conversation_url = f"{tenant.base}/conversations/{seeded.conversation_id}"
    contact_url = f"{tenant.base}/contacts/{seeded.contact_id}"

    response = await client.patch(conversation_url, json={"assignee_id": agent.user_id}, headers=tenant.owner.headers)
    assert response.status_code == 200, response.text
    assert (await client.get(contact_url, headers=agent.headers)).json()["assignee_id"] == agent.user_id
    assert (await client.get(conversation_url, headers=agent.headers)).status_code == 200
    assert_problem(await client.get(contact_url, headers=other.headers), 404)
    contact_events = await events_of(client, tenant.ws, "contact.updated")
    assert contact_events[-1].data["assignee_id"] == agent.user_id

    response = await client.patch(contact_url, json={"assignee_id": other.user_id}, headers=tenant.owner.headers)
    assert response.status_code == 200, response.text
    assert (await client.get(conversation_url, headers=other.headers)).json()["assignee_id"] == other.user_id
    assert_problem(await client.get(conversation_url, headers=agent.headers), 404)
    conversation_events = await events_of(client, tenant.ws, "conversation.updated")
    assert conversation_events[-1].data["assignee_id"] == other.user_id
