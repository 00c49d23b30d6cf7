"""Unauthenticated webhook input is bounded. A body whose phone_number_id no workspace has cannot be
checked against any secret, so anyone can send one: it goes to a quarantine capped in rows and in
bytes per body, rate-limited per client address, kept a short time, counted in /metrics. A body
with a bad signature stores nothing and is counted. Legitimate early webhooks still replay."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update

from kabar.channels import signing
from kabar.channels.fake import payloads as p
from kabar.db import tables as t
from kabar.ingest import service
from tests.channels.support import configure
from tests.conftest import app_client, create_database

R = t.webhook_receipts


def metric(text: str, provider: str, outcome: str) -> float:
    found = re.search(rf'kabar_webhooks_received_total\{{outcome="{outcome}",provider="{provider}"\}} (\S+)', text)
    if found is None:
        found = re.search(rf'kabar_webhooks_received_total\{{provider="{provider}",outcome="{outcome}"\}} (\S+)', text)
    return float(found.group(1)) if found else 0.0


async def metrics(app: Any) -> str:
    response = await app.get("/metrics")
    assert response.status_code == 200
    return response.text


async def quarantined(app: Any) -> list[Any]:
    return await app.runtime.db.read(lambda conn: conn.execute(select(R).where(R.c.workspace_id == "")).all())


def unknown(i: int, size: int = 0) -> tuple[bytes, dict[str, str]]:
    doc = p.kapso_received(pnid=f"pn-nobody-{i}", phone="+6281200000000", text="x" * size or f"spam {i}")
    raw = p.encode(doc)
    return raw, p.kapso_headers(raw, "attacker-made-this-up", "whatsapp.message.received")


async def fresh_app(backend: str, tmp_path: Any, settings: Any, name: str, **overrides: Any) -> Any:
    url = await asyncio.to_thread(create_database, backend, tmp_path, name)
    return app_client(replace(settings, database_url=url, **overrides))


async def test_a_burst_of_unknown_number_webhooks_keeps_at_most_the_cap(backend, tmp_path, settings):
    """Before: every one of the 40 bodies was stored in full, without limit (webhook_receipts,
    workspace ""), and nothing counted them apart from an 'unrouted' outcome."""
    async with await fresh_app(backend, tmp_path, settings, "quarantine", webhook_quarantine_rows=10,
                               webhook_quarantine_body_bytes=2048) as app:
        before = await metrics(app)
        answers = []
        for i in range(40):
            raw, headers = unknown(i, size=5000 if i == 0 else 0)
            answers.append((await app.post("/webhooks/kapso", content=raw, headers=headers)).status_code)
        assert answers.count(200) == 10 and answers.count(429) == 30
        kept = await quarantined(app)
        assert len(kept) == 10
        assert all(len(bytes(row.body)) <= 2048 for row in kept)
        [cut] = [row for row in kept if row.status == "truncated"]
        assert "cut from" in cut.error and await service.replay(app.runtime, cut.id) == "truncated"
        after = await metrics(app)
        assert metric(after, "kapso", "unrouted") - metric(before, "kapso", "unrouted") == 9
        assert metric(after, "kapso", "truncated") - metric(before, "kapso", "truncated") == 1
        assert metric(after, "kapso", "quarantine_full") - metric(before, "kapso", "quarantine_full") == 30
        # Past retention, the housekeeping job deletes them (and room is made again).
        old = app.runtime.settings.webhook_quarantine_hours + 1
        await app.runtime.db.transaction(lambda uow: uow.conn.execute(
            update(R).where(R.c.workspace_id == "").values(received_at=uow.now - timedelta(hours=old))))
        from kabar.jobs.builtin import housekeeping
        from kabar.jobs.registry import Job

        await housekeeping(app.runtime, Job(id="j", kind="system.housekeeping", payload={"once": True}, workspace_id=None, serial_key=None, attempts=1, max_attempts=1))
        assert await quarantined(app) == []


async def test_unknown_number_webhooks_are_rate_limited_per_address(backend, tmp_path, settings):
    limits = {**settings.extra, "rate_limit_webhook_unrouted": "5/minute"}
    async with await fresh_app(backend, tmp_path, settings, "quarantine_rate", extra=limits) as app:
        before = await metrics(app)
        answers = []
        for i in range(12):
            raw, headers = unknown(i)
            answers.append((await app.post("/webhooks/kapso", content=raw, headers=headers)).status_code)
        assert answers == [200] * 5 + [429] * 7
        assert len(await quarantined(app)) == 5
        after = await metrics(app)
        assert metric(after, "kapso", "quarantine_rate_limited") - metric(before, "kapso", "quarantine_rate_limited") == 7


async def test_bad_signature_stores_nothing_and_is_counted(client, workspace):
    channel = await configure(workspace, "kapso")
    before = await metrics(client)
    count = select(func.count()).select_from(R)
    stored = await client.runtime.db.read(lambda conn: conn.execute(count).scalar_one())
    for i in range(5):
        raw = p.encode(p.kapso_received(pnid=channel.pnid, phone="+6281200000001", text=f"palsu {i}"))
        headers = p.kapso_headers(raw, channel.webhook_secret, "whatsapp.message.received")
        headers["x-webhook-signature"] = signing.sign("wrong", raw)
        assert (await client.post("/webhooks/kapso", content=raw, headers=headers)).status_code == 401
    assert await client.runtime.db.read(lambda conn: conn.execute(count).scalar_one()) == stored
    after = await metrics(client)
    assert metric(after, "kapso", "unauthorized") - metric(before, "kapso", "unauthorized") == 5
