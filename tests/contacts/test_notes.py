"""Notes and tasks on a contact: authorship, edit rights, validation, CSV export."""

from __future__ import annotations

import csv
import io

from tests.contacts.helpers import create_contact, events_of
from tests.helpers import assert_problem


async def test_note_lifecycle_and_task_fields(client, tenant):
    contact = await create_contact(tenant, phone="081240001000", name="Rina")
    notes = f"{tenant.base}/contacts/{contact['id']}/notes"
    created = await client.post(notes, json={"content": "  Call back about IELTS  ", "due_at": "2026-12-01T03:00:00+07:00"}, headers=tenant.owner.headers)
    assert created.status_code == 201, created.text
    note = created.json()
    assert note["content"] == "Call back about IELTS"
    assert note["due_at"] == "2026-11-30T20:00:00Z"
    assert note["completed_at"] is None
    assert note["author_id"] == tenant.owner.user_id and note["author_type"] == "user" and note["note_type"] == "note"

    done = await client.patch(f"{notes}/{note['id']}", json={"completed_at": "2026-11-30T21:00:00Z"}, headers=tenant.owner.headers)
    assert done.status_code == 200 and done.json()["completed_at"] == "2026-11-30T21:00:00Z"
    reopened = await client.patch(f"{notes}/{note['id']}", json={"completed_at": None, "content": "Call back (again)"}, headers=tenant.owner.headers)
    assert reopened.json()["completed_at"] is None and reopened.json()["content"] == "Call back (again)"
    assert reopened.json()["due_at"] == "2026-11-30T20:00:00Z"

    second = (await client.post(notes, json={"content": "second"}, headers=tenant.owner.headers)).json()
    listed = (await client.get(notes, headers=tenant.owner.headers)).json()
    assert [n["id"] for n in listed["data"]] == [second["id"], note["id"]] and listed["next_cursor"] is None
    page = (await client.get(notes, params={"limit": 1}, headers=tenant.owner.headers)).json()
    assert [n["id"] for n in page["data"]] == [second["id"]]
    rest = (await client.get(notes, params={"limit": 1, "cursor": page["next_cursor"]}, headers=tenant.owner.headers)).json()
    assert [n["id"] for n in rest["data"]] == [note["id"]]

    assert (await client.delete(f"{notes}/{note['id']}", headers=tenant.owner.headers)).status_code == 204
    assert_problem(await client.patch(f"{notes}/{note['id']}", json={"content": "x"}, headers=tenant.owner.headers), 404)
    types = [e.type for e in await events_of(client, tenant.ws, "note.created", "note.updated", "note.deleted")]
    assert types == ["note.created", "note.updated", "note.updated", "note.created", "note.deleted"]
    assert all(e.contact_id == contact["id"] for e in await events_of(client, tenant.ws, "note.created"))


async def test_note_validation(client, tenant):
    contact = await create_contact(tenant, phone="081240002000")
    notes = f"{tenant.base}/contacts/{contact['id']}/notes"
    for bad in ({"content": "   "}, {"content": "x", "due_at": "2026-12-01T03:00:00"}, {"content": "x", "due_at": "tomorrow"}, {}, {"content": "x" * 10_001}):
        assert_problem(await client.post(notes, json=bad, headers=tenant.owner.headers), 422)
    note = (await client.post(notes, json={"content": "ok"}, headers=tenant.owner.headers)).json()
    assert_problem(await client.patch(f"{notes}/{note['id']}", json={"content": ""}, headers=tenant.owner.headers), 422)
    other = await create_contact(tenant, phone="081240002001")
    # A note is addressed through its own contact only.
    wrong = f"{tenant.base}/contacts/{other['id']}/notes/{note['id']}"
    assert_problem(await client.patch(wrong, json={"content": "x"}, headers=tenant.owner.headers), 404)


async def test_only_author_or_manager_edits(client, tenant):
    author = await tenant.add_user("member")
    colleague = await tenant.add_user("member")
    admin = await tenant.add_user("admin")
    contact = await create_contact(tenant, phone="081240003000")
    notes = f"{tenant.base}/contacts/{contact['id']}/notes"
    note = (await client.post(notes, json={"content": "mine"}, headers=author.headers)).json()
    assert note["author_id"] == author.user_id
    url = f"{notes}/{note['id']}"
    assert_problem(await client.patch(url, json={"content": "hijack"}, headers=colleague.headers), 403)
    assert_problem(await client.delete(url, headers=colleague.headers), 403)
    assert (await client.patch(url, json={"content": "edited"}, headers=author.headers)).status_code == 200
    assert (await client.patch(url, json={"content": "by admin"}, headers=admin.headers)).status_code == 200
    # An API key writes as itself and may edit what it wrote, not people's notes.
    key = await tenant.api_key()
    bot_note = (await client.post(notes, json={"content": "from the bot"}, headers=key.headers)).json()
    assert bot_note["author_id"] is None and bot_note["author_type"] == "api"
    assert (await client.patch(f"{notes}/{bot_note['id']}", json={"content": "bot edit"}, headers=key.headers)).status_code == 200
    assert_problem(await client.patch(url, json={"content": "bot"}, headers=key.headers), 403)
    assert (await client.delete(url, headers=tenant.owner.headers)).status_code == 204


async def test_idempotent_note_create(client, tenant):
    one = await create_contact(tenant, phone="081240004000")
    two = await create_contact(tenant, phone="081240004001")
    headers = {**tenant.owner.headers, "Idempotency-Key": "note-1"}
    first = await client.post(f"{tenant.base}/contacts/{one['id']}/notes", json={"content": "hi"}, headers=headers)
    again = await client.post(f"{tenant.base}/contacts/{one['id']}/notes", json={"content": "hi"}, headers=headers)
    assert first.json()["id"] == again.json()["id"]
    # The same key and body on another contact is another request, not a replay.
    other = await client.post(f"{tenant.base}/contacts/{two['id']}/notes", json={"content": "hi"}, headers=headers)
    assert other.status_code == 201 and other.json()["contact_id"] == two["id"]
    listed = (await client.get(f"{tenant.base}/contacts/{one['id']}/notes", headers=tenant.owner.headers)).json()["data"]
    assert len(listed) == 1


async def test_notes_export(client, tenant):
    member = await tenant.add_user("member")
    colleague = await tenant.add_user("member")
    mine = await create_contact(tenant, phone="081240005000", name="=Mine")
    hidden = await create_contact(tenant, phone="081240005001", assignee_id=colleague.user_id)
    await client.post(f"{tenant.base}/contacts/{mine['id']}/notes", json={"content": "@SUM(A1)", "due_at": "2026-12-01T00:00:00Z"}, headers=tenant.owner.headers)
    await client.post(f"{tenant.base}/contacts/{hidden['id']}/notes", json={"content": "secret"}, headers=tenant.owner.headers)

    one = await client.get(f"{tenant.base}/contacts/{mine['id']}/notes/export.csv", headers=member.headers)
    assert one.status_code == 200 and one.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(one.text.lstrip("\ufeff"))))
    assert len(table) == 1
    assert table[0]["contact_name"] == "'=Mine" and table[0]["content"] == "'@SUM(A1)"
    assert table[0]["contact_phone"] == "'+6281240005000" and table[0]["due_at"] == "2026-12-01T00:00:00Z"
    assert_problem(await client.get(f"{tenant.base}/contacts/{hidden['id']}/notes/export.csv", headers=member.headers), 404)

    everything = await client.get(f"{tenant.base}/notes/export.csv", headers=tenant.owner.headers)
    assert everything.status_code == 200
    assert {r["content"] for r in csv.DictReader(io.StringIO(everything.text.lstrip("\ufeff")))} == {"'@SUM(A1)", "secret"}
    assert_problem(await client.get(f"{tenant.base}/notes/export.csv", headers=member.headers), 403)
