"""Uploads: stored under KABAR_DATA_DIR with their sha256, downloadable within the workspace
only, 16 MB at most, usable as media of a message in the same workspace."""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlalchemy import select

from kabar.db import tables as t

from tests.conversations.seed import seed_conversation
from tests.helpers import assert_problem

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
MB16 = 16 * 1024 * 1024


async def _upload(client, tenant, content, filename="foto.png", mime="image/png", caller=None):
    return await client.post(
        f"{tenant.base}/uploads", files={"file": (filename, content, mime)}, headers=(caller or tenant.owner).headers
    )


async def _uploads(client, ws):
    def read(conn):  # noqa: ANN001, ANN202
        return conn.execute(select(t.uploads).where(t.uploads.c.workspace_id == ws)).all()

    return await client.runtime.db.read(read)


async def test_upload_download_and_send(client, tenant, other_tenant):
    response = await _upload(client, tenant, PNG, filename="../../etc/Foto Produk.png")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["filename"] == "Foto Produk.png" and body["mime_type"] == "image/png" and body["size"] == len(PNG)
    assert body["sha256"] == hashlib.sha256(PNG).hexdigest()
    stored = Path(client.runtime.settings.data_dir) / "uploads" / tenant.ws / body["upload_id"]
    assert stored.read_bytes() == PNG
    download = await client.get(f"{tenant.base}/uploads/{body['upload_id']}", headers=tenant.owner.headers)
    assert download.status_code == 200 and download.content == PNG
    assert download.headers["content-type"].startswith("image/png")
    assert_problem(await client.get(f"{other_tenant.base}/uploads/{body['upload_id']}", headers=other_tenant.owner.headers), 404)
    assert_problem(await client.get(f"{tenant.base}/uploads/{body['upload_id']}"), 401)

    seeded = await seed_conversation(client, tenant.ws)
    url = f"{tenant.base}/conversations/{seeded.conversation_id}/messages"
    response = await client.post(url, json={"type": "image", "media": {"upload_id": body["upload_id"], "caption": "Ini fotonya"}}, headers=tenant.owner.headers)
    assert response.status_code == 202, response.text
    assert response.json()["media"] == {
        "id": body["upload_id"], "mime_type": "image/png", "filename": "Foto Produk.png", "caption": "Ini fotonya",
        "size": len(PNG), "sha256": body["sha256"],
    }
    # The wrong kind of file for the message type, and another workspace's upload, are refused.
    response = await client.post(url, json={"type": "video", "media": {"upload_id": body["upload_id"]}}, headers=tenant.owner.headers)
    assert [e["field"] for e in assert_problem(response, 422)["errors"]] == ["media.upload_id"]
    theirs = (await _upload(client, other_tenant, PNG)).json()
    response = await client.post(url, json={"type": "image", "media": {"upload_id": theirs["upload_id"]}}, headers=tenant.owner.headers)
    assert [e["field"] for e in assert_problem(response, 422)["errors"]] == ["media.upload_id"]


async def test_upload_type_from_name_when_not_declared(client, tenant):
    response = await _upload(client, tenant, b"%PDF-1.4 test", filename="brosur.pdf", mime="application/octet-stream")
    assert response.status_code == 201 and response.json()["mime_type"] == "application/pdf"
    download = await client.get(f"{tenant.base}/uploads/{response.json()['upload_id']}", headers=tenant.owner.headers)
    assert "brosur.pdf" in download.headers["content-disposition"]
    html = await _upload(client, tenant, b"<script>alert(1)</script>", filename="x.html", mime="text/html")
    download = await client.get(f"{tenant.base}/uploads/{html.json()['upload_id']}", headers=tenant.owner.headers)
    assert download.headers["content-disposition"].startswith("attachment")


async def test_upload_needs_a_file_field(client, tenant):
    response = await client.post(f"{tenant.base}/uploads", files={"document": ("a.txt", b"hi", "text/plain")}, headers=tenant.owner.headers)
    assert [e["field"] for e in assert_problem(response, 422)["errors"]] == ["file"]
    response = await client.post(f"{tenant.base}/uploads", data={"file": "not a file"}, headers=tenant.owner.headers)
    assert_problem(response, 422)


async def test_upload_size_limits(client, tenant):
    # Exactly 16 MB is accepted.
    response = await _upload(client, tenant, b"\x00" * MB16, filename="video.mp4", mime="video/mp4")
    assert response.status_code == 201, response.text
    assert response.json()["size"] == MB16
    before = len(await _uploads(client, tenant.ws))
    # One byte more: 413, and neither a row nor a file is left behind.
    response = await _upload(client, tenant, b"\x00" * (MB16 + 1), filename="big.mp4", mime="video/mp4")
    assert_problem(response, 413)
    # A body far over the limit is refused from its Content-Length.
    response = await _upload(client, tenant, b"\x00" * (MB16 + 2 * 1024 * 1024), filename="bigger.mp4", mime="video/mp4")
    assert_problem(response, 413)
    assert len(await _uploads(client, tenant.ws)) == before
    folder = Path(client.runtime.settings.data_dir) / "uploads" / tenant.ws
    assert len(list(folder.iterdir())) == before


async def _send(client, tenant, conversation_id, upload_id, caller=None):
    return await client.post(
        f"{tenant.base}/conversations/{conversation_id}/messages",
        json={"type": "image", "media": {"upload_id": upload_id}},
        headers=(caller or tenant.owner).headers,
    )


async def test_a_sent_file_is_visible_exactly_when_its_conversation_is(client, tenant):
    """Uploads belong to their conversation once sent (kabar.auth.visibility); before, any member
    downloaded any upload of the workspace (200 where the conversation answered 404)."""
    member, colleague = await tenant.add_user("member"), await tenant.add_user("member")
    theirs = await seed_conversation(client, tenant.ws, assignee_id=colleague.user_id)
    mine = await seed_conversation(client, tenant.ws, assignee_id=member.user_id)
    upload_id = (await _upload(client, tenant, PNG)).json()["upload_id"]
    assert (await _send(client, tenant, theirs.conversation_id, upload_id)).status_code == 202
    url = f"{tenant.base}/uploads/{upload_id}"

    assert_problem(await client.get(f"{tenant.base}/conversations/{theirs.conversation_id}", headers=member.headers), 404)
    assert_problem(await client.get(url, headers=member.headers), 404)
    assert (await client.get(url, headers=colleague.headers)).content == PNG
    assert (await client.get(url, headers=tenant.owner.headers)).status_code == 200
    # Nor can the member launder it through their own conversation.
    response = await _send(client, tenant, mine.conversation_id, upload_id, caller=member)
    assert [e["field"] for e in assert_problem(response, 422)["errors"]] == ["media.upload_id"]

    # Reassigned to the member: the file follows its conversation.
    response = await client.patch(f"{tenant.base}/conversations/{theirs.conversation_id}", json={"assignee_id": member.user_id}, headers=tenant.owner.headers)
    assert response.status_code == 200, response.text
    assert (await client.get(url, headers=member.headers)).content == PNG
    assert_problem(await client.get(url, headers=colleague.headers), 404)


async def test_an_unsent_upload_is_its_uploaders_and_a_file_sent_twice_belongs_to_each_conversation(client, tenant):
    member, colleague = await tenant.add_user("member"), await tenant.add_user("member")
    upload_id = (await _upload(client, tenant, PNG, caller=member)).json()["upload_id"]
    url = f"{tenant.base}/uploads/{upload_id}"
    assert (await client.get(url, headers=member.headers)).status_code == 200
    assert (await client.get(url, headers=tenant.owner.headers)).status_code == 200
    assert_problem(await client.get(url, headers=colleague.headers), 404)
    colleagues = await seed_conversation(client, tenant.ws, assignee_id=colleague.user_id)
    response = await _send(client, tenant, colleagues.conversation_id, upload_id, caller=colleague)
    assert [e["field"] for e in assert_problem(response, 422)["errors"]] == ["media.upload_id"]

    # The owner sends the member's file in the member's conversation, then in the colleague's:
    # the second send gets its own id (the same file), visible with that conversation.
    members = await seed_conversation(client, tenant.ws, assignee_id=member.user_id)
    first = (await _send(client, tenant, members.conversation_id, upload_id)).json()["media"]["id"]
    second = (await _send(client, tenant, colleagues.conversation_id, upload_id)).json()["media"]["id"]
    assert first == upload_id and second != upload_id
    assert_problem(await client.get(url, headers=colleague.headers), 404)
    assert (await client.get(f"{tenant.base}/uploads/{second}", headers=colleague.headers)).content == PNG
    assert_problem(await client.get(f"{tenant.base}/uploads/{second}", headers=member.headers), 404)
    assert (await client.get(url, headers=member.headers)).content == PNG
    rows = {row.id: row for row in await _uploads(client, tenant.ws)}
    assert rows[first].conversation_id == members.conversation_id and rows[second].conversation_id == colleagues.conversation_id
    assert rows[first].path == rows[second].path  # one file on disk
