"""Thread history: newest first, cursor pages, `before` as cursor or message id, tenancy."""

from __future__ import annotations

from tests.conversations.seed import seed_conversation
from tests.helpers import assert_problem


async def test_history_newest_first_in_pages(client, tenant, other_tenant):
    seeded = await seed_conversation(client, tenant.ws, messages=12)
    url = f"{tenant.base}/conversations/{seeded.conversation_id}/messages"
    newest_first = list(reversed(seeded.message_ids))
    page = (await client.get(url, params={"limit": 5}, headers=tenant.owner.headers)).json()
    assert [m["id"] for m in page["data"]] == newest_first[:5]
    for field in ("id", "direction", "sender_type", "sender_id", "type", "text", "media", "status", "error",
                  "provider_message_id", "reply_to_id", "reactions", "created_at"):
        assert field in page["data"][0]
    assert page["data"][0]["direction"] == "inbound" and page["data"][0]["status"] == "received"
    collected = [m["id"] for m in page["data"]]
    while page["next_cursor"]:
        page = (await client.get(url, params={"limit": 5, "before": page["next_cursor"]}, headers=tenant.owner.headers)).json()
        collected.extend(m["id"] for m in page["data"])
    assert collected == newest_first
    # `before` may also be a message id of this conversation.
    page = (await client.get(url, params={"before": newest_first[3]}, headers=tenant.owner.headers)).json()
    assert [m["id"] for m in page["data"]] == newest_first[4:] and page["next_cursor"] is None
    assert_problem(await client.get(url, params={"before": "garbage!"}, headers=tenant.owner.headers), 400)
    assert_problem(await client.get(url, params={"limit": 500}, headers=tenant.owner.headers), 422)
    theirs = await seed_conversation(client, other_tenant.ws, messages=2)
    assert_problem(await client.get(url, params={"before": theirs.message_ids[0]}, headers=tenant.owner.headers), 400)
    assert_problem(await client.get(f"{tenant.base}/conversations/{theirs.conversation_id}/messages", headers=tenant.owner.headers), 404)
