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
