"""Tenancy and member visibility on every route, generated from the app's route table.

The cross-workspace matrix itself (every route × every kind of credential × B's workspace id) is
``tests/foundation/test_tenancy.py``; its helpers are reused here, adding:

1. inside your own workspace, another workspace's ids on every GET and DELETE route → exactly 404
   (the foundation matrix only forbids 2xx/5xx there, because bodies may fail validation first);
2. a member, on every GET route of the workspace, never sees anything about a contact assigned to
   someone else (its id, conversation, phone, name, messages, notes, the files sent in it) — lists,
   exports, the event log, stats, search, media downloads — nor the workspace's invitations and
   channel, and its ids in the path are 404; the owner sees them (so the check bites);
3. every event type of the audience registry (``kabar.events.AUDIENCE``, and a type it does not
   know) reaches a member, an admin and an API key exactly as its class and the visibility rule
   allow, the rule taken from what each may GET.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from litestar.routes import HTTPRoute

from kabar import events
from kabar.channels.fake import payloads as p
from kabar.ids import new_id
from tests.channels.support import configure, post_kapso
from tests.foundation.test_tenancy import fill, tenant_routes, two_tenants  # noqa: F401 - fixture
from tests.helpers import Tenant

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


async def test_other_workspaces_ids_inside_your_own_are_404_on_every_get_and_delete(client, two_tenants):  # noqa: F811
    a, b, rows = two_tenants
    failures, checked = [], 0
    for route in tenant_routes(client.app):
        if route.websocket or not route.path.startswith("/v1/"):
            continue
        path, names_b_rows = fill(route, a.ws, rows)
        if not names_b_rows:
            continue
        for method in set(route.methods) & {"GET", "DELETE"}:
            checked += 1
            response = await client.request(method, path, headers=a.owner.headers)
            if response.status_code != 404:
                failures.append(f"{method} {route.path}: {response.status_code} {response.text[:200]}")
    assert checked >= 15, checked
    assert not failures, "\n".join(failures)


def get_routes(app: Any) -> list[str]:
    return sorted({route.path for route in app.routes if isinstance(route, HTTPRoute) and "GET" in route.methods
                   and route.path.startswith("/v1/workspaces/{ws")})


async def customer(client: Any, tenant: Tenant, channel: Any, phone: str, name: str, text: str) -> dict[str, Any]:
    response = await post_kapso(client, channel, p.kapso_received(pnid=channel.pnid, phone=phone, text=text, name=name))
    assert response.status_code == 200, response.text
    listed = (await client.get(f"{tenant.base}/conversations", params={"limit": 200}, headers=tenant.owner.headers)).json()["data"]
    return next(c for c in listed if c["contact"]["phone"] == phone)


async def test_a_member_sees_nothing_of_contacts_assigned_to_others_on_any_get_route(client, tenant):
    member = await tenant.add_user("member")
    channel = await configure(tenant)
    h = tenant.owner.headers
    hidden = await customer(client, tenant, channel, "+6281311110001", "Rahasia Wulandari", "Pesan rahasia nomor satu")
    mine = await customer(client, tenant, channel, "+6281311110002", "Budi Terlihat", "Pesan untuk member")
    for conversation, assignee in ((hidden, tenant.owner.user_id), (mine, member.user_id)):
        response = await client.patch(f"{tenant.base}/contacts/{conversation['contact']['id']}", json={"assignee_id": assignee}, headers=h)
        assert response.status_code == 200, response.text
        response = await client.patch(f"{tenant.base}/conversations/{conversation['id']}", json={"assignee_id": assignee}, headers=h)
        assert response.status_code == 200, response.text
    note = await client.post(f"{tenant.base}/contacts/{hidden['contact']['id']}/notes", json={"content": "Catatan rahasia owner"}, headers=h)
    assert note.status_code == 201, note.text
    # A file the owner sends in the hidden conversation, and the workspace's invitations.
    upload = await client.post(f"{tenant.base}/uploads", files={"file": ("rahasia.png", PNG, "image/png")}, headers=h)
    assert upload.status_code == 201, upload.text
    upload_id = upload.json()["upload_id"]
    sent = await client.post(f"{tenant.base}/conversations/{hidden['id']}/messages", json={"type": "image", "media": {"upload_id": upload_id}}, headers=h)
    assert sent.status_code == 202, sent.text
    invitee = f"undangan-{new_id()[-8:]}@example.test"
    invited = await client.post(f"{tenant.base}/invitations", json={"email": invitee, "role": "member"}, headers=h)
    assert invited.status_code == 201, invited.text
    messages = (await client.get(f"{tenant.base}/conversations/{hidden['id']}/messages", headers=h)).json()["data"]

    secrets_of_hidden = {
        "contact id": hidden["contact"]["id"],
        "conversation id": hidden["id"],
        "phone": "6281311110001",
        "name": "Rahasia Wulandari",
        "message text": "Pesan rahasia nomor satu",
        "message id": messages[0]["id"],
        "note": "Catatan rahasia owner",
        "upload id": upload_id,
        "invitee email": invitee,
        "channel": channel.pnid,
    }
    pins = {"contact_id": hidden["contact"]["id"], "conversation_id": hidden["id"], "note_id": note.json()["id"], "upload_id": upload_id}
    queries = [{}, {"q": "Rahasia", "phone": "+6281311110001", "since": "0", "limit": "200"}]

    leaks, owner_saw, checked = [], set(), 0
    for template in get_routes(client.app):
        if template.endswith("/events/stream"):
            continue  # the same visibility filter as the event list; streamed (covered in tests/realtime)
        names = [m.group(1) for m in re.finditer(r"\{(\w+)(?::\w+)?\}", template) if m.group(1) != "ws"]
        path = re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: tenant.ws if m.group(1) == "ws" else pins.get(m.group(1), new_id()), template)
        for params in queries:
            checked += 1
            as_member = await client.get(path, params=params, headers=member.headers)
            assert as_member.status_code < 500, (template, as_member.text)
            found = [what for what, value in secrets_of_hidden.items() if value in _without_notices(template, as_member)]
            if found:
                leaks.append(f"{template} {params}: {as_member.status_code} shows the hidden contact's {', '.join(found)}")
            if any(n in pins for n in names) and as_member.status_code not in (403, 404):
                leaks.append(f"{template}: {as_member.status_code} for the hidden contact's ids (expected 404)")
            as_owner = await client.get(path, params=params, headers=h)
            if as_owner.status_code == 200 and (
                hidden["contact"]["id"] in as_owner.text or "Rahasia Wulandari" in as_owner.text or as_owner.content == PNG
            ):
                owner_saw.add(template)
    assert not leaks, "\n".join(leaks)
    # The check bites: the owner does see the hidden contact on the main lists, exports and the log.
    expected = {"/contacts", "/conversations", "/events", "/contacts/export.csv", "/uploads/{upload_id:str}"}
    assert {e for e in expected if any(t.endswith(e) for t in owner_saw)} == expected, sorted(owner_saw)
    # And the member does see their own contact.
    listed = (await client.get(f"{tenant.base}/conversations", headers=member.headers)).json()["data"]
    assert [c["id"] for c in listed] == [mine["id"]]
    print(f"\nVISIBILITY: {len(get_routes(client.app))} GET routes, {checked} member requests, 0 leaks")


# Event types whose payloads are settings, people's addresses, keys or integrations: never a member's.
MANAGERS_ONLY_FAMILIES = ("invitation.", "api_key.", "webhook.", "channel.", "workspace.", "ari.config", "ari.scoring")
UNKNOWN_TYPE = "feature.added_later"  # stands for an event type someone adds without registering it


async def test_every_event_type_reaches_members_only_as_the_rule_allows(client, tenant):
    """Generated from kabar.events.AUDIENCE, so a new event type is covered without editing this.
    Before: every event without a contact (invitations, settings, keys, channel, uploads) reached
    every member, and an unknown type did too."""
    h = tenant.owner.headers
    member, colleague, admin = await tenant.add_user("member"), await tenant.add_user("member"), await tenant.add_user("admin")
    key = await tenant.api_key()
    contacts: dict[str, str | None] = {"no contact": None}
    for case, assignee in (("the member's", member.user_id), ("a colleague's", colleague.user_id), ("nobody's", None)):
        phone = f"+62812{secrets.randbelow(10**8):08d}"
        response = await client.post(f"{tenant.base}/contacts", json={"phone": phone, "assignee_id": assignee}, headers=h)
        assert response.status_code == 201, response.text
        contacts[case] = response.json()["id"]
    authors = {"no contact": None, "the member's": member.user_id, "a colleague's": colleague.user_id, "nobody's": None}
    start = (await client.get(f"{tenant.base}/events", headers=h)).json()["last_seq"]
    types = sorted(events.AUDIENCE) + [UNKNOWN_TYPE]

    def write(uow) -> None:  # noqa: ANN001
        for type_ in types:
            for case, contact_id in contacts.items():
                uow.emit(tenant.ws, type_, {"marker": f"{type_}|{case}", "created_by": authors[case]}, contact_id=contact_id)

    await client.runtime.db.transaction(write)

    async def received(caller) -> set[str]:  # noqa: ANN001
        page = (await client.get(f"{tenant.base}/events", params={"since": start, "limit": 1000}, headers=caller.headers)).json()
        assert not page["has_more"], page["next_since"]
        # A managers' type with a members' view reaches the others reduced to its listed fields.
        for e in page["data"]:
            if e["type"] in events.MEMBER_VIEW and "marker" not in e["data"]:
                assert set(e["data"]) <= set(events.MEMBER_VIEW[e["type"]]), e
        return {e["data"]["marker"] for e in page["data"] if isinstance(e["data"], dict) and "marker" in e["data"]}

    # What each caller may GET decides what it may receive about a customer (the REST rule).
    async def may_get(caller, contact_id) -> bool:  # noqa: ANN001
        return contact_id is not None and (await client.get(f"{tenant.base}/contacts/{contact_id}", headers=caller.headers)).status_code == 200

    callers = {"member": member, "admin": admin, "API key": key, "owner": tenant.owner}
    manages = {"member": False, "admin": True, "API key": False, "owner": True}
    wrong = []
    for name, caller in callers.items():
        got = await received(caller)
        sees_customer = {case: await may_get(caller, contact_id) for case, contact_id in contacts.items()}
        sees_all = all(sees_customer[c] for c in contacts if c != "no contact")
        for type_ in types:
            kind = events.audience_of(type_)
            for case in contacts:
                if manages[name] or kind is events.Audience.EVERYONE:
                    expected = True
                elif kind is events.Audience.MANAGERS:
                    expected = False
                elif kind is events.Audience.AUTHOR:
                    expected = sees_all or (authors[case] is not None and authors[case] == caller.user_id)
                else:  # about a customer: what the caller may GET (an event naming no contact: those who see all)
                    expected = sees_all if case == "no contact" else sees_customer[case]
                if (f"{type_}|{case}" in got) != expected:
                    wrong.append(f"{name} {'got' if expected is False else 'missed'} {type_} about {case} contact ({kind})")
    assert not wrong, "\n".join(wrong)
    assert events.audience_of(UNKNOWN_TYPE) is events.Audience.MANAGERS
    assert [t for t in events.AUDIENCE if t.startswith(MANAGERS_ONLY_FAMILIES) and events.AUDIENCE[t] is not events.Audience.MANAGERS] == []
    print(f"\nEVENT AUDIENCES: {len(types)} event types x {len(contacts)} cases x {len(callers)} callers checked")


NOTICE_FIELDS = {"id", "contact_id", "assignee_id", "previous_assignee_id", "contact"}


def _without_notices(template: str, response: Any) -> str:
    """The response's text; for the event log, without reassignment notices. The hidden customer
    arrived unassigned (every member saw it): when the owner took it, the members were told which
    conversation left their inbox (ids and the new assignee, kabar.events.reassignment_notice)."""
    if not template.endswith("/events") or response.status_code != 200:
        return response.text
    kept = []
    for event in response.json()["data"]:
        data = event["data"]
        if not ("previous_assignee_id" in data and set(data) <= NOTICE_FIELDS and set(data.get("contact") or {}) <= {"id"}):
            kept.append(event)
    return json.dumps(kept)


def test_every_workspace_route_runs_the_workspace_hook(client):
    """``kabar.http.workspace_hook`` (the app's ``before_request``) admits callers to workspaces; a
    router, controller or handler setting its own ``before_request`` would silently replace it."""
    from kabar.http import workspace_hook

    handlers = [
        handler
        for route in client.app.routes
        if isinstance(route, HTTPRoute) and route.path.startswith("/v1/workspaces/{ws")
        for handler in route.route_handlers
    ]
    assert len(handlers) > 30, len(handlers)
    assert [h for h in handlers if h.resolve_before_request() is not workspace_hook] == []
