"""Schemathesis against ``/schema/openapi.json`` of a real ``kabar serve`` (SQLite and PostgreSQL).

The workspace is seeded over the API with one of everything (a contact with its conversation and
messages from a signed webhook, a note, an outgoing-webhook endpoint, ARI slots, an upload, a
member, an API key, an invitation) and the path parameters are pinned to those real ids, so the
generated requests reach the handlers instead of stopping at a 404. The owner's bearer session is
the credential. Checks: no 5xx (``not_a_server_error``) and every response as the schema says
(``response_schema_conformance``); at least 1,000 generated requests per backend.

Excluded, because they would end the run's own credential or data rather than test anything:
deleting the workspace, logging out, changing the password; and the endless SSE stream
(covered by the realtime suite).
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from kabar.channels.fake import payloads as p
from tests.conftest import create_database, server_env
from tests.fault.support import kapso_channel
from tests.realtime.support import Site

MIN_REQUESTS = 1000
EXCLUDED = [
    ("DELETE", "/v1/workspaces/{ws}"),
    ("POST", "/v1/auth/logout"),
    ("POST", "/v1/auth/password"),
    ("GET", "/v1/workspaces/{ws}/events/stream"),
]


async def seed(http: httpx.AsyncClient, site: Site) -> tuple[str, dict[str, str]]:
    """One of everything in a fresh workspace; returns the owner's token and the path parameter pins."""
    ws, owner = await site.workspace(http)
    h = owner.headers
    base = f"/v1/workspaces/{ws}"

    async def ok(response: Any) -> dict[str, Any]:
        response = await response
        assert response.status_code in (200, 201, 202), f"{response.request.method} {response.request.url}: {response.text}"
        return response.json() if response.content else {}

    pnid, secret = await kapso_channel(http, ws, h)
    raw = p.encode(p.kapso_received(pnid=pnid, phone="+6281234500001", text="Halo, mau tanya", name="Sari"))
    assert (await http.post("/webhooks/kapso", content=raw, headers=p.kapso_headers(raw, secret, "whatsapp.message.received"))).status_code == 200
    conversation = (await ok(http.get(f"{base}/conversations", headers=h)))["data"][0]
    contact_id = conversation["contact_id"] if "contact_id" in conversation else conversation["contact"]["id"]
    note = await ok(http.post(f"{base}/contacts/{contact_id}/notes", json={"content": "Minta katalog"}, headers=h))
    webhook = await ok(http.post(f"{base}/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["message.created"]}, headers=h))
    slot = await ok(http.post(f"{base}/ari/slots", json={"day_of_week": 1, "start_time": "09:00", "end_time": "12:00"}, headers=h))
    await ok(http.post(f"{base}/ari/knowledge", json={"title": "Jam buka", "content": "Senin-Jumat 9-17"}, headers=h))
    upload = await ok(http.post(f"{base}/uploads", files={"file": ("katalog.pdf", b"%PDF-1.4 fuzz", "application/pdf")}, headers=h))
    member = await site.member(http, ws, owner)
    key = await ok(http.post(f"{base}/api-keys", json={"name": "fuzz"}, headers=h))
    invitation = await ok(http.post(f"{base}/invitations", json={"email": f"{secrets.token_hex(4)}@example.test"}, headers=h))
    pins = {
        "ws": ws,
        "contact_id": contact_id,
        "conversation_id": conversation["id"],
        "note_id": note["id"],
        "webhook_id": webhook["id"],
        "item_id": slot["id"],
        "upload_id": upload["upload_id"],
        "user_id": member.user_id,
        "key_id": key["id"],
        "invitation_id": invitation["id"],
    }
    return owner.token, pins


def run_schemathesis(url: str, token: str, pins: dict[str, str], tmp: Path, examples: int) -> tuple[int, str]:
    config = tmp / "schemathesis.toml"
    lines = ["[parameters]"] + [f'"path.{name}" = "{value}"' for name, value in pins.items()]
    for method, path in EXCLUDED:
        lines += ["", "[[operations]]", f'include-name = "{method} {path}"', "enabled = false"]
    # Schemathesis' own coverage generator fails on this body schema ("inconsistent results" inside
    # its generator, before any request); the fuzzing phase still covers the operation.
    lines += ["", "[[operations]]", 'include-name = "PUT /v1/workspaces/{ws}/ari/scoring"', "phases.coverage.enabled = false"]
    config.write_text("\n".join(lines) + "\n")
    command = [
        str(Path(sys.executable).with_name("st")), "--config-file", str(config), "run", f"{url}/schema/openapi.json",
        "-H", f"Authorization: Bearer {token}",
        "--checks", "not_a_server_error,response_schema_conformance",
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", str(examples),
        "--seed", os.environ.get("KABAR_FUZZ_SEED", "20261124"), "--workers", "2", "--request-timeout", "20", "--no-color",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200, env={**os.environ, "NO_COLOR": "1"})
    (tmp / "schemathesis.out").write_text(done.stdout + done.stderr)
    return done.returncode, done.stdout + done.stderr


async def test_schemathesis_finds_no_server_errors_and_no_off_schema_responses(backend: str, tmp_path: Path, start_server: Any) -> None:
    url = await asyncio.to_thread(create_database, backend, tmp_path, f"fuzz_{secrets.token_hex(2)}")
    server = await asyncio.to_thread(start_server, server_env(url, tmp_path))
    site = Site(url, tmp_path)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            token, pins = await seed(http, site)
    finally:
        await site.db.dispose()
    code, output = await asyncio.to_thread(run_schemathesis, server.url, token, pins, tmp_path, 12)
    summary = re.search(r"Test cases:\s*\n\s*(\d+) generated, (.*)", output)
    assert summary, output[-3000:]
    generated = int(summary.group(1))
    print(f"\nSCHEMATHESIS [{backend}]: {generated} generated, {summary.group(2).strip()}")
    assert code == 0, output[-6000:]
    assert generated >= MIN_REQUESTS, summary.group(0)
    assert "passed" in summary.group(2) and "failed" not in summary.group(2), summary.group(0)
