"""POST …/conversations/{id}/messages/{mid}/reactions: the business's reaction is recorded at once
(pending, message.updated), queued for WhatsApp in the conversation's send order, and refused
with a clear problem when WhatsApp could not show it. (Delivery: tests/channels/test_reactions.py.)"""

from __future__ import annotations

from datetime import timedelta

from kabar.db import tables as t
from tests.conversations.seed import seed_conversation
from tests.conversations.test_changes import events_of, jobs_of
from tests.helpers import assert_problem
from tests.messages.test_send import _url


def _react_url(tenant, seeded, message_id=None):
    return f"{_url(tenant, seeded.conversation_id)}/{message_id or seeded.message_ids[0]}/reactions"


async def test_reaction_is_recorded_pending_and_queued(client, tenant):
    seeded = await seed_conversation(client, tenant.ws, messages=2)
    response = await client.post(_react_url(tenant, seeded), json={"emoji": "👍"}, headers=tenant.owner.headers)
    assert response.status_code == 202, response.text
    message = response.json()
    [mine] = message["reactions"]
    assert (mine["emoji"], mine["by"], mine["status"], mine["user_id"]) == ("👍", "business", "pending", tenant.owner.user_id)
    [event] = await events_of(client, tenant.ws, "message.updated")
    assert event.data == message and event.contact_id == seeded.contact_id
    [job] = await jobs_of(client, tenant.ws, "message.react")
    assert job.payload == {"message_id": message["id"], "emoji": "👍", "at": mine["at"]}
    assert job.serial_key == f"send:{seeded.conversation_id}"  # in order with the conversation's sends
    history = (await client.get(_url(tenant, seeded.conversation_id), headers=tenant.owner.headers)).json()["data"]
    assert next(m for m in history if m["id"] == message["id"])["reactions"] == message["reactions"]

    # Another emoji replaces it; the same again changes nothing; "" removes it.
    changed = (await client.post(_react_url(tenant, seeded), json={"emoji": "❤️"}, headers=tenant.owner.headers)).json()
    assert [r["emoji"] for r in changed["reactions"]] == ["❤️"]
    again = await client.post(_react_url(tenant, seeded), json={"emoji": "❤️"}, headers=tenant.owner.headers)
    assert again.status_code == 202 and again.json()["reactions"] == changed["reactions"]
    removed = (await client.post(_react_url(tenant, seeded), json={"emoji": ""}, headers=tenant.owner.headers)).json()
    assert removed["reactions"] == []
    assert [j.payload["emoji"] for j in await jobs_of(client, tenant.ws, "message.react")] == ["👍", "❤️", ""]


async def test_customer_reaction_stays_next_to_the_business_one(client, tenant):
    seeded = await seed_conversation(client, tenant.ws, messages=1)
    customer = {"emoji": "😂", "by": "contact", "at": "2026-01-01T00:00:00+00:00"}
    await client.runtime.db.transaction(
        lambda uow: uow.conn.execute(t.messages.update().where(t.messages.c.id == seeded.message_ids[0]).values(reactions=[customer]))
    )
    message = (await client.post(_react_url(tenant, seeded), json={"emoji": "🙏"}, headers=tenant.owner.headers)).json()
    assert [(r["by"], r["emoji"]) for r in message["reactions"]] == [("contact", "😂"), ("business", "🙏")]


async def test_refusals_change_nothing(client, tenant):
    seeded = await seed_conversation(client, tenant.ws, messages=1)
    url = _react_url(tenant, seeded)
    for bad in ("ok", "👍👍", "a👍", "x" * 33):
        problem = assert_problem(await client.post(url, json={"emoji": bad}, headers=tenant.owner.headers), 422)
        assert problem["errors"][0]["field"] == "emoji", bad
    assert_problem(await client.post(_react_url(tenant, seeded, "00000000-0000-0000-0000-000000000000"), json={"emoji": "👍"},
                                     headers=tenant.owner.headers), 404)
    # A message WhatsApp never got (no provider id) cannot carry a reaction.
    pending = (await client.post(_url(tenant, seeded.conversation_id), json={"type": "text", "text": "Halo"}, headers=tenant.owner.headers)).json()
    problem = assert_problem(await client.post(_react_url(tenant, seeded, pending["id"]), json={"emoji": "👍"}, headers=tenant.owner.headers),
                             422, "message-not-reactable")
    assert "no WhatsApp message id" in problem["detail"]
    assert await jobs_of(client, tenant.ws, "message.react") == []
    assert await events_of(client, tenant.ws, "message.updated") == []


async def test_outside_the_24_hour_window_is_refused(client, tenant):
    seeded = await seed_conversation(client, tenant.ws, messages=1, last_message_at=None, inbound_age=timedelta(hours=25))
    assert_problem(await client.post(_react_url(tenant, seeded), json={"emoji": "👍"}, headers=tenant.owner.headers), 422,
                   "outside-customer-service-window")
    assert await jobs_of(client, tenant.ws, "message.react") == []


async def test_members_react_only_where_they_see_and_other_workspaces_never(client, tenant, other_tenant):
    member = await tenant.add_user("member")
    theirs = await seed_conversation(client, tenant.ws, messages=1, assignee_id=tenant.owner.user_id)
    open_to_all = await seed_conversation(client, tenant.ws, messages=1)
    assert_problem(await client.post(_react_url(tenant, theirs), json={"emoji": "👍"}, headers=member.headers), 404)
    assert (await client.post(_react_url(tenant, open_to_all), json={"emoji": "👍"}, headers=member.headers)).status_code == 202
    foreign = f"{other_tenant.base}/conversations/{theirs.conversation_id}/messages/{theirs.message_ids[0]}/reactions"
    assert_problem(await client.post(foreign, json={"emoji": "👍"}, headers=other_tenant.owner.headers), 404)
