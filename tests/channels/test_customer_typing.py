"""A simulated customer's typing (the fake provider's ``kabar.fake.typing`` webhook event) reaches
connected staff as an ephemeral ``typing`` message and is never stored: no message, no event-log
row (the webhook receipt is kept, ``ignored``, like every delivery)."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import httpx
from kabar.channels.fake.simulator import Customer, send_typing
from kabar.db import tables as t
from kabar.ingest.service import replay
from tests.channels.support import configure, count, rows, wait_for
from tests.channels.test_send import PHONE, start_conversation


class EventStream:
    """The workspace's Server-Sent Events (named events only: typing, subscribed…)."""

    def __init__(self, response: httpx.Response):
        self.lines = response.aiter_lines()

    async def next_named(self, timeout: float = 10.0) -> tuple[str, dict[str, Any]]:
        async def read() -> tuple[str, dict[str, Any]]:
            name = None
            async for line in self.lines:
                if line.startswith("event:"):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and name:
                    return name, json.loads(line.split(":", 1)[1])
                elif not line:
                    name = None
            raise AssertionError("the stream ended")

        return await asyncio.wait_for(read(), timeout)


async def test_customer_typing_is_published_live_and_never_stored(client, workspace, kabar_url):
    channel = await configure(workspace)
    conversation_id, _ = await start_conversation(client, workspace, channel)
    [conversation] = await rows(client, t.conversations, workspace.ws)
    events_before, messages_before = await count(client, t.events, workspace.ws), await count(client, t.messages, workspace.ws)
    headers = workspace.owner.headers
    async with httpx.AsyncClient(timeout=30) as http, http.stream("GET", f"{kabar_url}{workspace.base}/events/stream", headers=headers) as response:
        assert response.status_code == 200
        stream = EventStream(response)
        assert (await stream.next_named())[0] == "subscribed"
        # A number Kabar has no conversation with: nothing to show it in, so nothing is published.
        stranger = Customer("+6285700001111", "Orang Baru")
        assert await send_typing(http, kabar_url, channel.pnid, channel.webhook_secret, stranger) == 200
        customer = Customer(PHONE, "Dewi")
        assert await send_typing(http, kabar_url, channel.pnid, channel.webhook_secret, customer) == 200
        name, typing = await stream.next_named()
        assert name == "typing"
        assert typing == {"op": "typing", "conversation_id": conversation_id, "contact_id": conversation.contact_id,
                          "sender_type": "contact", "state": "typing"}
        assert await send_typing(http, kabar_url, channel.pnid, channel.webhook_secret, customer, "paused") == 200
        name, paused = await stream.next_named()
        assert (name, paused["state"], paused["conversation_id"]) == ("typing", "paused", conversation_id)
        # Signed like every webhook: a wrong secret is refused.
        assert await send_typing(http, kabar_url, channel.pnid, "not-the-secret", customer) == 401
    assert await count(client, t.events, workspace.ws) == events_before
    assert await count(client, t.messages, workspace.ws) == messages_before
    receipts = [r for r in await rows(client, t.webhook_receipts, workspace.ws) if r.event_type == "kabar.fake.typing"]
    assert [r.status for r in receipts] == ["ignored"] * 3
    # Replaying such a receipt (``kabar webhooks replay``) has nothing to apply, and does not fail.
    assert await replay(client.runtime, receipts[0].id) != "failed"
    assert await count(client, t.events, workspace.ws) == events_before


async def test_staff_typing_shows_whatsapps_typing_indicator_to_the_customer(client, workspace, fake, jobs):
    channel = await configure(workspace, fake=fake)
    conversation_id, wamid = await start_conversation(client, workspace, channel)
    url = f"{workspace.base}/conversations/{conversation_id}/typing"
    response = await client.post(url, headers=workspace.owner.headers)
    assert response.status_code == 204, response.text
    await wait_for(lambda: _typing_reads(fake, wamid))
    [read] = fake.state.reads
    assert read == {"at": read["at"], "message_id": wamid, "typing": True}
    [request] = [r for r in fake.state.requests if r["outcome"] == "read"]
    assert request["body"] == {"messaging_product": "whatsapp", "status": "read", "message_id": wamid, "typing_indicator": {"type": "text"}}
    # Outside the 24-hour window nothing is sent; others' conversations stay hidden from a member.
    await client.runtime.db.transaction(lambda uow: uow.conn.execute(
        t.conversations.update().where(t.conversations.c.id == conversation_id).values(last_inbound_at=uow.now - timedelta(hours=25))))
    assert (await client.post(url, headers=workspace.owner.headers)).status_code == 204
    member = await workspace.add_user("member")
    await client.patch(f"{workspace.base}/conversations/{conversation_id}", json={"assignee_id": workspace.owner.user_id}, headers=workspace.owner.headers)
    assert (await client.post(url, headers=member.headers)).status_code == 404
    typing_jobs = [j for j in await rows(client, t.jobs, workspace.ws) if j.kind == "channel.mark_read" and j.payload.get("typing")]
    assert len(typing_jobs) == 1


async def _typing_reads(fake, wamid):
    return [r for r in fake.state.reads if r["message_id"] == wamid and r["typing"]]
