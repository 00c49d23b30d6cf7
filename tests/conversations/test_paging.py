"""Cursor paging of the inbox while messages arrive: no row present before paging began is
skipped or repeated, even when it jumps above the cursor mid-way."""

from __future__ import annotations

from datetime import timedelta

from kabar.db.types import utcnow

from tests.conversations.seed import receive_inbound, seed_conversation


async def _page(tenant, cursor=None, **params):
    if cursor:
        params["cursor"] = cursor
    response = await tenant.client.get(f"{tenant.base}/conversations", params={"limit": 7, **params}, headers=tenant.owner.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _seed_many(client, tenant, n, **kwargs):
    base = utcnow() - timedelta(hours=5)
    # Pairs share a last_message_at: the id must break the tie consistently.
    return [
        await seed_conversation(client, tenant.ws, name=f"Kontak {i}", last_message_at=base + timedelta(minutes=i // 2), **kwargs)
        for i in range(n)
    ]


async def test_paging_while_messages_arrive(client, tenant):
    seeded = await _seed_many(client, tenant, 30)
    original = {s.conversation_id for s in seeded}
    by_id = {s.conversation_id: s for s in seeded}
    seen: list[str] = []
    body = await _page(tenant)
    pages = 0
    while True:
        pages += 1
        ids = [row["id"] for row in body["data"]]
        seen.extend(ids)
        if body["next_cursor"] is None:
            break
        unseen = [s for s in seeded if s.conversation_id not in seen]
        # Between pages: a staff reply in a not-yet-seen conversation (it jumps to the top), a
        # customer message in another unseen one and in one already seen, and a new conversation.
        if unseen:
            response = await tenant.client.post(
                f"{tenant.base}/conversations/{unseen[0].conversation_id}/messages",
                json={"type": "text", "text": "Baik kak"},
                headers=tenant.owner.headers,
            )
            assert response.status_code == 202, response.text
        if len(unseen) > 3:
            target = by_id[unseen[len(unseen) // 2].conversation_id]
            await receive_inbound(tenant.client, tenant.ws, target.conversation_id, target.contact_id)
        done = by_id[ids[-1]]
        await receive_inbound(tenant.client, tenant.ws, done.conversation_id, done.contact_id)
        await seed_conversation(client, tenant.ws, name="Baru")
        body = await _page(tenant, body["next_cursor"])
    assert len(seen) == len(set(seen)), "a row was repeated"
    assert original <= set(seen), f"skipped: {original - set(seen)}"
    assert pages >= 5
    # Rows that moved are at the top of a fresh page 1, the newest conversations first.
    fresh = await _page(tenant, limit=50)
    assert fresh["total_count"] == 30 + pages - 1
    stamps = [row["last_message_at"] for row in fresh["data"]]
    assert stamps == sorted(stamps, reverse=True)


async def test_unread_tab_paging_while_messages_arrive(client, tenant):
    seeded = await _seed_many(client, tenant, 20, unread=1)
    seen: list[str] = []
    body = await _page(tenant, unread="true")
    assert body["total_count"] == 20 and body["unread_count"] == 20
    while True:
        seen.extend(row["id"] for row in body["data"])
        if body["next_cursor"] is None:
            break
        for s in seeded:
            if s.conversation_id not in seen:
                await receive_inbound(tenant.client, tenant.ws, s.conversation_id, s.contact_id)
                break
        body = await _page(tenant, body["next_cursor"], unread="true")
    assert len(seen) == len(set(seen)) == 20


async def test_pages_follow_the_order_and_end(client, tenant):
    seeded = await _seed_many(client, tenant, 15)
    first = await _page(tenant, limit=200)
    assert first["next_cursor"] is None and len(first["data"]) == 15
    ordered = [row["id"] for row in first["data"]]
    assert set(ordered) == {s.conversation_id for s in seeded}
    keys = [(row["last_message_at"], row["id"]) for row in first["data"]]
    assert keys == sorted(keys, reverse=True)
    collected, body = [], await _page(tenant, limit=4)
    while True:
        collected.extend(row["id"] for row in body["data"])
        if not body["next_cursor"]:
            break
        body = await _page(tenant, body["next_cursor"], limit=4)
    assert collected == ordered


async def test_late_delivered_message_does_not_hide_a_row(client, tenant):
    """A message stored after page 1 but timestamped before it (whole-second provider times, a
    slow webhook) moves its row above the cursor; paging forward still returns it once."""
    seeded = await _seed_many(client, tenant, 20)
    body = await _page(tenant)
    seen = [row["id"] for row in body["data"]]
    first_cursor_time = body["data"][-1]["last_message_at"]
    unseen = [s for s in seeded if s.conversation_id not in seen]
    late = unseen[-1]  # the oldest: it jumps over everything not yet seen
    await receive_inbound(client, tenant.ws, late.conversation_id, late.contact_id, at=utcnow() - timedelta(seconds=30))
    moved = (await tenant.client.get(f"{tenant.base}/conversations/{late.conversation_id}", headers=tenant.owner.headers)).json()
    assert moved["last_message_at"] > first_cursor_time
    while body["next_cursor"]:
        body = await _page(tenant, body["next_cursor"])
        seen.extend(row["id"] for row in body["data"])
    assert len(seen) == len(set(seen)) == 20
