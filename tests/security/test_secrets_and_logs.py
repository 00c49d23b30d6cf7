"""Secrets never appear in logs, API responses, CSV exports or the event log; log lines carry the
request id and the workspace id.

A real ``kabar serve`` (SQLite, jobs in-process) logs JSON at DEBUG. Recognisable secrets are set:
the channel's API key, webhook secret, app secret and verify token, the ARI model's API key, an
outgoing-webhook endpoint's signing secret, an API key, passwords, and the server's own secret
key, encryption key and IdP JWT secret. The app is then driven through its paths that touch them
(logins right and wrong, a signed and a badly signed webhook, Meta's handshake, a send that fails at
the provider, an ARI turn whose model is down, failing outgoing-webhook deliveries, every GET
operation of the schema, the CSV exports). Every captured byte is searched for every secret; the
two answers that exist to hand a secret over once (creating the API key, creating/rotating the
endpoint secret) are the only exceptions. The database file is searched too: provider secrets are
encrypted at rest.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from kabar.channels.fake import payloads as p
from kabar.crypto import Cipher  # noqa: F401 - documents what protects the secrets at rest
from kabar.db import tables as t
from tests.conftest import create_database, free_port, server_env
from tests.helpers import PASSWORD
from tests.realtime.support import Site
from tests.security.test_fuzz import seed


def mark(name: str) -> str:
    return f"LEAK{name}{secrets.token_hex(6)}"


class Capture:
    """Every response body the test received, by request."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, bytes]] = []
        self.handover: set[int] = set()  # responses allowed to contain a secret once

    async def hook(self, response: httpx.Response) -> None:
        await response.aread()
        self.bodies.append((f"{response.request.method} {response.request.url.path} -> {response.status_code}",
                            response.content + b"\n" + str(dict(response.headers)).encode()))

    def allow_last(self) -> None:
        self.handover.add(len(self.bodies) - 1)


async def test_secrets_never_leak_and_log_lines_carry_request_and_workspace(tmp_path: Path, start_server: Any) -> None:
    url = await asyncio.to_thread(create_database, "sqlite", tmp_path, "leaks")
    jwt_secret = mark("jwt") + "-long-enough-for-hs256"
    secret_key = mark("secretkey") + "x" * 20
    env = server_env(url, tmp_path, KABAR_LOG_LEVEL="DEBUG", KABAR_JWT_SECRET=jwt_secret, KABAR_SECRET_KEY=secret_key,
                     KABAR_PROVIDER_TIMEOUT="1", KABAR_JOB_MAX_ATTEMPTS="2")
    server = await asyncio.to_thread(start_server, env)
    site = Site(url, tmp_path)
    capture = Capture()
    dead = f"http://127.0.0.1:{free_port()}"
    values = {
        "channel api key": mark("apikey"),
        "channel webhook secret": mark("whsec"),
        "channel app secret": mark("appsecret"),
        "channel verify token": mark("verify"),
        "LLM api key": mark("llm"),
        "new password": mark("pw"),
        "IdP JWT secret": jwt_secret,
        "server secret key": secret_key,
        "owner password": PASSWORD,
    }
    request_id = "req-" + secrets.token_hex(8)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=20, event_hooks={"response": [capture.hook]}) as http:
            token, pins = await seed(http, site)
            ws = pins["ws"]
            base = f"/v1/workspaces/{ws}"
            owner = {"Authorization": f"Bearer {token}"}
            me = (await http.get("/v1/me", headers=owner)).json()
            email = me["user"]["email"] if "user" in me else me["email"]

            channel = {"provider": "kapso", "phone_number_id": "pn-leak", "api_base_url": dead + "/meta/whatsapp/v24.0",
                       "api_key": values["channel api key"], "webhook_secret": values["channel webhook secret"],
                       "app_secret": values["channel app secret"], "verify_token": values["channel verify token"]}
            assert (await http.put(f"{base}/channel", json=channel, headers=owner)).status_code == 200
            ari = {"enabled": True, "reply_delay_ms": 0,
                   "llm": {"model": "m", "base_url": dead + "/v1", "api_key": values["LLM api key"], "timeout_seconds": 1, "max_retries": 0}}
            assert (await http.put(f"{base}/ari/config", json=ari, headers=owner)).status_code == 200

            created = await http.post(f"{base}/webhooks", json={"url": dead + "/hook", "events": ["*"]}, headers=owner)
            capture.allow_last()
            values["outgoing webhook secret"] = created.json()["secret"]
            rotated = await http.post(f"{base}/webhooks/{created.json()['id']}/rotate-secret", headers=owner)
            capture.allow_last()
            values["rotated webhook secret"] = rotated.json()["secret"]
            key = await http.post(f"{base}/api-keys", json={"name": "leak"}, headers=owner)
            capture.allow_last()
            values["API key"] = key.json()["secret"]

            # Logins, right and wrong; a password change.
            assert (await http.post("/v1/auth/login", json={"email": email, "password": "wrong-" + values["new password"]})).status_code == 401
            changed = await http.post("/v1/auth/password", json={"current_password": PASSWORD, "new_password": values["new password"]}, headers=owner)
            assert changed.status_code == 204, changed.text
            assert (await http.post("/v1/auth/login", json={"email": email, "password": values["new password"]})).status_code == 200

            # Webhooks: signed, badly signed, Meta's handshake; the customer's message starts an ARI turn.
            raw = p.encode(p.kapso_received(pnid="pn-leak", phone="+6281200001111", text="Halo, mau tanya harga", name="Rina"))
            good = p.kapso_headers(raw, values["channel webhook secret"], "whatsapp.message.received")
            assert (await http.post("/webhooks/kapso", content=raw, headers=good)).status_code == 200
            assert (await http.post("/webhooks/kapso", content=raw + b" ", headers=good)).status_code == 401
            meta = p.encode(p.meta_envelope("pn-leak", {"messages": []}))
            assert (await http.post("/webhooks/meta", content=meta, headers=p.meta_headers(meta, "wrong"))).status_code == 401
            handshake = {"hub.mode": "subscribe", "hub.verify_token": values["channel verify token"], "hub.challenge": "12345"}
            assert (await http.get("/webhooks/meta", params=handshake)).status_code == 403  # a Kapso channel: no Meta handshake

            # ARI's fallback reply fails at the (dead) provider first: a staff reply would stop ARI there.
            conversations = (await http.get(f"{base}/conversations", headers=owner)).json()["data"]
            target = next(c for c in conversations if c["id"] != pins["conversation_id"])

            async def failed_outbound() -> int:
                messages = (await http.get(f"{base}/conversations/{target['id']}/messages", headers=owner)).json()["data"]
                return sum(1 for m in messages if m["direction"] == "outbound" and m["status"] == "failed")

            deadline = time.monotonic() + 60
            while await failed_outbound() < 1:
                assert time.monotonic() < deadline, "ARI's fallback did not fail at the dead provider"
                await asyncio.sleep(0.2)

            # A staff reply that fails at the (dead) provider, with a request id we can find in the log.
            sent = await http.post(f"{base}/conversations/{target['id']}/messages", json={"type": "text", "text": "Baik kak"},
                                   headers={**owner, "X-Request-Id": request_id})
            assert sent.status_code == 202, sent.text

            async def settled() -> bool:
                messages = (await http.get(f"{base}/conversations/{target['id']}/messages", headers=owner)).json()["data"]
                outbound = [m for m in messages if m["direction"] == "outbound"]
                return len(outbound) >= 2 and all(m["status"] == "failed" for m in outbound)

            deadline = time.monotonic() + 60
            while not await settled():
                assert time.monotonic() < deadline, "the staff reply and the ARI fallback did not both fail at the dead provider"
                await asyncio.sleep(0.2)

            # Every GET operation in the schema, with the seeded ids.
            schema = (await http.get("/schema/openapi.json")).json()
            for path, operations in schema["paths"].items():
                if "get" not in operations or path.endswith("/events/stream"):
                    continue
                concrete = re.sub(r"\{(\w+)\}", lambda m: pins.get(m.group(1), "x"), path)
                response = await http.get(concrete, headers=owner)
                assert response.status_code < 500, (path, response.text)
            # The SSE stream replays the event log (read without the capturing hook: it never ends).
            async with httpx.AsyncClient(base_url=server.url, timeout=20) as plain, \
                    plain.stream("GET", f"{base}/events/stream", params={"since": 0}, headers=owner) as stream:
                replayed: list[str] = []
                last_seq = None
                async for line in stream.aiter_lines():
                    replayed.append(line)
                    if line.startswith("data:") and last_seq is None:
                        last_seq = json.loads(line[5:])["last_seq"]
                    if last_seq is not None and line.strip() == f"id: {last_seq}":
                        break
                capture.bodies.append(("GET events/stream (replay)", "\n".join(replayed).encode()))
    finally:
        await site.db.dispose()
    server.stop()
    log_text = server.log_path.read_bytes()

    def events_and_exports(conn: Any) -> bytes:
        rows = conn.execute(select(t.events.c.data).where(t.events.c.workspace_id == ws)).all()
        return json.dumps([r[0] for r in rows], default=str).encode()

    from kabar.db.engine import Database
    from tests.conftest import base_settings

    db = Database(base_settings(url, tmp_path))
    try:
        event_log = await db.read(events_and_exports)
    finally:
        await db.dispose()
    database_file = b"".join(Path(f).read_bytes() for f in tmp_path.glob("leaks.db*"))

    places: dict[str, bytes] = {"server log": log_text, "event log": event_log}
    for n, (label, body) in enumerate(capture.bodies):
        if n not in capture.handover:
            places[f"response {n} {label}"] = body
    leaks = [f"{name} in {place}" for name, value in values.items() for place, data in places.items() if value.encode() in data]
    at_rest = [name for name, value in values.items() if name.startswith(("channel", "LLM")) and value.encode() in database_file]
    exports = [label for label, _ in capture.bodies if ".csv" in label]
    print(f"\nLEAKS: {len(values)} secrets searched in {len(places)} places ({len(capture.bodies)} responses incl. "
          f"{len(exports)} CSV exports, {len(log_text.splitlines())} log lines, the event log): {len(leaks)} found; "
          f"{len(at_rest)} stored in plaintext")
    assert len(exports) >= 3, exports
    # Positive control: the search does find what is there (the customer's text is in both).
    assert b"Halo, mau tanya harga" in event_log and b"Halo, mau tanya harga" in places["response %d GET events/stream (replay)" % (len(capture.bodies) - 1)]
    assert not leaks, leaks
    assert not at_rest, f"stored unencrypted: {at_rest}"

    # Log lines are JSON with the request id and the workspace id of the request that wrote them.
    lines = [json.loads(line) for line in log_text.splitlines() if line.startswith(b"{")]
    mine = [line for line in lines if line.get("request_id") == request_id]
    assert mine, "no log line carries the request id sent in X-Request-Id"
    assert all(line["workspace_id"] == ws for line in mine), mine
    assert any(line["workspace_id"] == ws and line["request_id"] not in ("-", request_id) for line in lines)
    # Background jobs log under the job's id and its workspace (the failed send, the ARI turn).
    job_lines = [line for line in lines if line["request_id"].startswith("job-")]
    assert job_lines and all(line["workspace_id"] == ws for line in job_lines), job_lines[:5]
