"""``conversation_counts`` (kept by triggers) always equals counting the conversations."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import case, delete, func, select

from kabar.db import tables as t
from tests.conversations.seed import (
    receive_inbound,
    seed_conversation,
    set_conversation,
)

c = t.conversations


async def _buckets(client, ws):
    """(buckets as kept, buckets counted from the conversations and their contacts' lead status)."""
    cc = t.conversation_counts

    def read(conn):  # noqa: ANN001, ANN202
        kept = conn.execute(
            select(cc.c.status, cc.c.assignee_key, cc.c.unread, cc.c.lead_status, cc.c.n).where(cc.c.workspace_id == ws, cc.c.n != 0)
        ).all()
        rows = select(
            c.c.status.label("s"),
            func.coalesce(c.c.assignee_id, "").label("a"),
            case((c.c.unread_count > 0, True), else_=False).label("u"),
            t.contacts.c.lead_status.label("l"),
        ).join_from(c, t.contacts, t.contacts.c.id == c.c.contact_id).where(c.c.workspace_id == ws).subquery()
        real = conn.execute(select(rows.c.s, rows.c.a, rows.c.u, rows.c.l, func.count()).group_by(rows.c.s, rows.c.a, rows.c.u, rows.c.l)).all()
        return {(s, a, bool(u), lead): n for s, a, u, lead, n in kept}, {(s, a, bool(u), lead): n for s, a, u, lead, n in real}

    return await client.runtime.db.read(read)


async def _tag_buckets(client, ws):
    """(tag buckets as kept, the same counted from the conversations and their contacts' tags)."""
    tc = t.conversation_tag_counts

    def read(conn):  # noqa: ANN001, ANN202
        kept = conn.execute(
            select(tc.c.tag, tc.c.status, tc.c.assignee_key, tc.c.unread, tc.c.lead_status, tc.c.n).where(tc.c.workspace_id == ws, tc.c.n != 0)
        ).all()
        rows = conn.execute(
            select(c.c.status, c.c.assignee_id, c.c.unread_count, t.contacts.c.lead_status, t.contacts.c.tags)
            .join_from(c, t.contacts, t.contacts.c.id == c.c.contact_id)
            .where(c.c.workspace_id == ws)
        ).all()
        real = Counter((tag, s, a or "", u > 0, lead) for s, a, u, lead, tags in rows for tag in set(tags))
        return {(tag, s, a, bool(u), lead): n for tag, s, a, u, lead, n in kept}, dict(real)

    return await client.runtime.db.read(read)


async def test_counts_follow_every_kind_of_write(client, tenant, other_tenant):
    member = await tenant.add_user("member")
    h = tenant.owner.headers
    a = await seed_conversation(client, tenant.ws, unread=2, tags=["vip", "uk"])
    b = await seed_conversation(client, tenant.ws, assignee_id=member.user_id, tags=["vip"])
    d = await seed_conversation(client, tenant.ws, status="closed")
    await seed_conversation(client, other_tenant.ws, unread=1)
    kept, real = await _buckets(client, tenant.ws)
    assert kept == real == {
        ("open", "", True, "prospect"): 1, ("open", member.user_id, False, "prospect"): 1, ("closed", "", False, "prospect"): 1
    }

    await client.patch(f"{tenant.base}/conversations/{a.conversation_id}", json={"status": "pending", "assignee_id": member.user_id}, headers=h)
    await client.post(f"{tenant.base}/conversations/{a.conversation_id}/read", headers=h)
    await receive_inbound(client, tenant.ws, b.conversation_id, b.contact_id)
    await receive_inbound(client, tenant.ws, b.conversation_id, b.contact_id)  # 1 -> 2 unread: same bucket
    await set_conversation(client, tenant.ws, d.conversation_id, status="open", unread_count=5)

    def remove(uow):  # noqa: ANN001, ANN202
        uow.conn.execute(delete(t.contacts).where(t.contacts.c.workspace_id == tenant.ws, t.contacts.c.id == d.contact_id))

    await client.runtime.db.transaction(remove)  # cascades to its conversation
    kept, real = await _buckets(client, tenant.ws)
    assert kept == real == {("pending", member.user_id, False, "prospect"): 1, ("open", member.user_id, True, "prospect"): 1}
    kept, real = await _tag_buckets(client, tenant.ws)
    assert kept == real == {
        ("vip", "pending", member.user_id, False, "prospect"): 1,
        ("uk", "pending", member.user_id, False, "prospect"): 1,
        ("vip", "open", member.user_id, True, "prospect"): 1,
    }

    body = (await client.get(f"{tenant.base}/conversations", headers=h)).json()
    assert (body["total_count"], body["unread_count"]) == (2, 1)
    body = (await client.get(f"{tenant.base}/conversations", params={"status": "pending"}, headers=h)).json()
    assert (body["total_count"], body["unread_count"]) == (1, 0)
    # Removing the member unassigns their conversations (ON DELETE SET NULL of the user is not
    # exercised here: users are never deleted); the API does it explicitly.
    await client.patch(f"{tenant.base}/conversations/{b.conversation_id}", json={"assignee_id": None}, headers=h)
    kept, real = await _buckets(client, tenant.ws)
    assert kept == real


async def test_deleting_a_workspace_with_conversations(client):
    """The count triggers never block a workspace's deletion (its buckets go with it)."""
    from tests.helpers import make_tenant

    doomed = await make_tenant(client)
    await seed_conversation(client, doomed.ws, unread=1)
    await seed_conversation(client, doomed.ws, status="closed")
    response = await client.delete(doomed.base, headers=doomed.owner.headers)
    assert response.status_code == 204, response.text

    def left(conn):  # noqa: ANN001, ANN202
        return conn.execute(select(func.count()).select_from(t.conversation_counts).where(t.conversation_counts.c.workspace_id == doomed.ws)).scalar()

    assert await client.runtime.db.read(left) == 0


async def test_counts_follow_the_contacts_lead_status_and_tags(client, tenant):
    """The lead-status and tag buckets follow the contact: created with a lead status and tags,
    changed through the API, and a conversation moved to another contact by a merge."""
    h = tenant.owner.headers
    hot = await seed_conversation(client, tenant.ws, phone="+6281230000001", lead_status="hot_lead", unread=1, tags=["vip", "s2"])
    client_ = await seed_conversation(client, tenant.ws, phone="+6281230000002", lead_status="client", tags=["s2"])
    closed = await seed_conversation(client, tenant.ws, phone="+6281230000003", status="closed")
    kept, real = await _buckets(client, tenant.ws)
    assert kept == real == {
        ("open", "", True, "hot_lead"): 1, ("open", "", False, "client"): 1, ("closed", "", False, "prospect"): 1
    }

    async def listed(**params):  # noqa: ANN202
        body = (await client.get(f"{tenant.base}/conversations", params=params, headers=h)).json()
        return body["total_count"], body["unread_count"], {row["id"] for row in body["data"]}

    assert await listed(lead_status="hot_lead") == (1, 1, {hot.conversation_id})
    assert await listed(lead_status=["client", "prospect"]) == (2, 0, {client_.conversation_id, closed.conversation_id})
    assert await listed(tag="s2") == (2, 1, {hot.conversation_id, client_.conversation_id})
    assert await listed(tag=["vip", "s2"]) == (2, 1, {hot.conversation_id, client_.conversation_id})
    assert await listed(tag="vip", lead_status="hot_lead", unread=True) == (1, 1, {hot.conversation_id})

    response = await client.patch(f"{tenant.base}/contacts/{client_.contact_id}", json={"tags": ["uk"]}, headers=h)
    assert response.status_code == 200, response.text
    assert await listed(tag="s2") == (1, 1, {hot.conversation_id})
    assert await listed(tag="uk") == (1, 0, {client_.conversation_id})

    response = await client.patch(f"{tenant.base}/contacts/{hot.contact_id}", json={"lead_status": "lost"}, headers=h)
    assert response.status_code == 200, response.text
    assert await listed(lead_status="hot_lead") == (0, 0, set())
    assert await listed(lead_status="lost", status="open") == (1, 1, {hot.conversation_id})

    # A contact without a conversation keeps the other's: the conversation moves over and takes
    # the kept contact's lead status.
    keeper = (await client.post(f"{tenant.base}/contacts", json={"phone": "+6281230000009", "lead_status": "student"}, headers=h)).json()
    response = await client.post(f"{tenant.base}/contacts/merge", json={"keep_id": keeper["id"], "merge_id": client_.contact_id}, headers=h)
    assert response.status_code == 200, response.text
    lead = response.json()["lead_status"]
    kept, real = await _buckets(client, tenant.ws)
    assert kept == real and ("open", "", False, lead) in real
    assert (await listed(lead_status=lead))[2] == {client_.conversation_id}
    kept, real = await _tag_buckets(client, tenant.ws)
    assert kept == real and ("uk", "open", "", False, lead) in real
