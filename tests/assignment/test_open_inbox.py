"""Removing a member tells open inboxes: their customers come back to the shared queue as
contact.updated + conversation.updated, received by a colleague's WebSocket, matching a refetch."""

from __future__ import annotations

from tests.realtime.support import Sock


async def test_removing_a_member_reaches_a_colleague_s_open_inbox(site, server, http):
    # Before: the member's rows were unassigned with raw UPDATEs and no event: Bob's open inbox
    # never showed the customer who was now his to see (a refetch did).
    ws, owner = await site.workspace(http)
    ana = await site.member(http, ws, owner)
    bob = await site.member(http, ws, owner)
    contact_id, conversation_id = await site.contact(ws, None)
    base = f"/v1/workspaces/{ws}"
    response = await http.patch(f"{base}/conversations/{conversation_id}", json={"assignee_id": ana.user_id}, headers=owner.headers)
    assert response.status_code == 200, response.text
    assert (await http.get(f"{base}/conversations/{conversation_id}", headers=bob.headers)).status_code == 404

    inbox = await Sock.open(server.url, ws, bob.token, since=None)
    try:
        response = await http.delete(f"{base}/members/{ana.user_id}", headers=owner.headers)
        assert response.status_code == 204, response.text

        def about_the_customer(sock: Sock) -> dict[str, dict]:
            return {e["type"]: e["data"] for e in sock.events() if e["data"].get("id") in (contact_id, conversation_id)}

        await inbox.wait_for(lambda s: {"contact.updated", "conversation.updated"} <= about_the_customer(s).keys())
        seen = about_the_customer(inbox)
        assert seen["contact.updated"]["assignee_id"] is None and seen["conversation.updated"]["assignee_id"] is None
        assert seen["conversation.updated"]["previous_assignee_id"] == ana.user_id
        # What the events said is what a refetch shows.
        conversation = (await http.get(f"{base}/conversations/{conversation_id}", headers=bob.headers)).json()
        assert conversation == {k: v for k, v in seen["conversation.updated"].items() if k != "previous_assignee_id"}
        contact = (await http.get(f"{base}/contacts/{contact_id}", headers=bob.headers)).json()
        assert contact == {k: v for k, v in seen["contact.updated"].items() if k != "previous_assignee_id"}
    finally:
        await inbox.close()
