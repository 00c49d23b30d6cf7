"""The lossless suite, against real ``kabar serve`` processes over HTTP (two of them on PostgreSQL).

2,000 deliveries: 30 % exact duplicates (same body, same idempotency key), 10 % concurrent double
deliveries (the same request twice at once), Kapso batches and their one-by-one fallback
re-deliveries under new keys, business-app echoes whose status webhooks arrive shuffled (read
before delivered before the message itself), and forty brand-new customers writing at once.
Expected: exactly the unique messages, one contact and one conversation per customer, unread
counts and previews right, every status final and kept once in the history.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from kabar.channels.fake import payloads as p
from kabar.db import tables as t
from kabar.db.engine import Database
from tests.conftest import base_settings, create_database, server_env

TOTAL = 2000
EXACT_DUPLICATES = 600  # 30 %
CONCURRENT_DOUBLES = 200  # 10 %
CUSTOMERS = 40
ECHOES_PER_CUSTOMER = 3
CONCURRENCY = 32
PASSWORD = "lossless-suite-123"


@dataclass
class Delivery:
    raw: bytes
    headers: dict[str, str]
    concurrent_double: bool = False


@dataclass
class Plan:
    pnid: str
    secret: str
    deliveries: list[Delivery] = field(default_factory=list)
    inbound: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)  # phone -> [(ts, wamid, text)]
    echoes: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)
    unique: int = 0


def build_plan(pnid: str, secret: str, seed: int = 2026) -> Plan:
    rng = random.Random(seed)
    plan = Plan(pnid, secret)
    phones = [f"+62812{5000000 + i * 7919:07d}"[:14] for i in range(CUSTOMERS)]
    clock = {phone: 1767300000 + i for i, phone in enumerate(phones)}

    def tick(phone: str) -> int:
        clock[phone] += rng.randint(3, 40)  # distinct, increasing provider times per customer
        return clock[phone]

    unique: list[Delivery] = []
    status_groups: list[list[int]] = []  # per echo: indexes of [read, delivered, echo] deliveries

    def kapso(doc: dict[str, Any], event: str, *, batch: int | None = None, key: str | None = None) -> Delivery:
        raw = p.encode(doc)
        return Delivery(raw, p.kapso_headers(raw, secret, event, key=key or secrets.token_hex(8), batch=batch))

    for phone in phones:
        plan.inbound[phone], plan.echoes[phone] = [], []
        for n in range(ECHOES_PER_CUSTOMER):
            ts, wamid, text = tick(phone), f"wamid.ECHO.{phone[1:]}.{n}", f"Balasan dari HP toko #{n} untuk {phone}"
            plan.echoes[phone].append((ts, wamid, text))
            message = {"type": "text", "text": {"body": text}}
            echo = kapso(p.kapso_outbound(pnid=pnid, phone=phone, wamid=wamid, statuses=[p.meta_status(wamid, "sent", phone, ts)],
                                          message=message, origin="business_app"), "whatsapp.message.sent")
            indexes = []
            for status, later in (("read", 9), ("delivered", 4)):
                body = p.meta_envelope(pnid, {"statuses": [p.meta_status(wamid, status, phone, ts + later)]})
                raw = p.encode(body)
                # Kapso forwards raw Meta webhooks with the payload's SHA-256 as idempotency key.
                unique.append(Delivery(raw, p.kapso_headers(raw, secret, "", key=hashlib.sha256(raw).hexdigest())))
                indexes.append(len(unique) - 1)
            unique.append(echo)
            indexes.append(len(unique) - 1)
            status_groups.append(indexes)

    target_unique = TOTAL - EXACT_DUPLICATES - CONCURRENT_DOUBLES
    while len(unique) < target_unique:
        phone = rng.choice(phones)
        size = rng.choice([1, 1, 1, 1, 2, 3, 4]) if len(unique) < target_unique - 8 else 1
        items = []
        for _ in range(size):
            ts, wamid = tick(phone), "wamid.IN." + secrets.token_hex(10)
            text = rng.choice(["Halo kak", "Masih ada?", "Ongkir ke Medan?", "Sudah transfer 🙏", "Ukuran 42 ya", "Terima kasih 😊"]) + f" ({wamid[-6:]})"
            plan.inbound[phone].append((ts, wamid, text))
            items.append(p.kapso_received(pnid=pnid, phone=phone, text=text, wamid=wamid, ts=ts, name=f"Pelanggan {phone[-4:]}"))
        if size == 1:
            unique.append(kapso(items[0], "whatsapp.message.received"))
            continue
        unique.append(kapso(p.kapso_batch(items), "whatsapp.message.received", batch=size))
        if rng.random() < 0.25 and len(unique) + size <= target_unique:
            # The batch "failed" at Kapso, which then re-delivers each message alone, under new keys.
            unique.extend(kapso(item, "whatsapp.message.received") for item in items)

    order = list(range(len(unique)))
    rng.shuffle(order)
    position = {index: pos for pos, index in enumerate(order)}
    for group in status_groups[::2]:  # half the echoes: read first, then delivered, then the message
        slots = sorted(position[i] for i in group)
        for index, slot in zip(group, slots, strict=True):
            order[slot] = index
    schedule = [unique[i] for i in order]
    plan.unique = len(schedule)
    for delivery in rng.sample(schedule, CONCURRENT_DOUBLES):
        delivery.concurrent_double = True
    for original in rng.sample(schedule, EXACT_DUPLICATES):
        schedule.insert(rng.randrange(schedule.index(original) + 1, len(schedule) + 1), Delivery(original.raw, dict(original.headers)))
    plan.deliveries = schedule
    return plan


def run_kabar(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "kabar", *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


async def setup_workspace(url: str, env: dict[str, str]) -> tuple[str, str, str]:
    email = f"lossless-{secrets.token_hex(4)}@example.test"
    run_kabar(env, "user", "create", "--email", email, "--password", PASSWORD)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        token = (await http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})).json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        ws = (await http.post("/v1/workspaces", json={"name": "Toko Lossless"}, headers=auth)).json()["id"]
        pnid, secret = "pn-lossless-" + secrets.token_hex(4), "whsec-" + secrets.token_hex(12)
        body = {"provider": "kapso", "phone_number_id": pnid, "api_key": "unused", "webhook_secret": secret,
                "api_base_url": "http://127.0.0.1:9/meta/whatsapp/v24.0"}
        response = await http.put(f"/v1/workspaces/{ws}/channel", json=body, headers=auth)
        assert response.status_code == 200, response.text
    return ws, pnid, secret


async def deliver(urls: list[str], plan: Plan) -> tuple[list[int], float, int]:
    """Post every delivery with at most ``CONCURRENCY`` in flight; like a provider, a transport
    error (no HTTP answer) is retried with the same body and key. Returns (statuses, seconds, retries)."""
    slots = asyncio.Semaphore(CONCURRENCY)
    statuses: list[int] = []
    retries = 0
    # Drop idle connections before the server would (uvicorn closes them after 5 s).
    limits = httpx.Limits(max_connections=CONCURRENCY * 2, keepalive_expiry=2.0)

    async with httpx.AsyncClient(timeout=60, limits=limits) as http:

        async def once(url: str, delivery: Delivery) -> int:
            nonlocal retries
            for attempt in range(5):
                try:
                    return (await http.post(url + "/webhooks/kapso", content=delivery.raw, headers=delivery.headers)).status_code
                except httpx.TransportError:
                    if attempt == 4:
                        raise
                    retries += 1
                    await asyncio.sleep(0.1 * 2**attempt)
            raise AssertionError("unreachable")

        async def post(n: int, delivery: Delivery) -> None:
            async with slots:
                if delivery.concurrent_double:
                    pair = await asyncio.gather(once(urls[n % len(urls)], delivery), once(urls[(n + 1) % len(urls)], delivery))
                    statuses.extend(pair)
                else:
                    statuses.append(await once(urls[n % len(urls)], delivery))

        started = time.perf_counter()
        await asyncio.gather(*(post(n, d) for n, d in enumerate(plan.deliveries)))
        return statuses, time.perf_counter() - started, retries


@pytest.mark.slow
async def test_lossless_under_duplicates_concurrency_and_shuffled_statuses(backend: str, tmp_path: Path, start_server: Any) -> None:
    db_url = await asyncio.to_thread(create_database, backend, tmp_path, "lossless")
    env = server_env(db_url, tmp_path)
    servers = [start_server(env)] + ([start_server(env)] if backend == "postgres" else [])
    urls = [s.url for s in servers]
    ws, pnid, secret = await setup_workspace(urls[0], {**os.environ, **env})
    plan = build_plan(pnid, secret)
    cpu_before = sum(server_cpu_seconds(s.proc.pid) for s in servers)
    statuses, elapsed, retries = await deliver(urls, plan)
    cpu = sum(server_cpu_seconds(s.proc.pid) for s in servers) - cpu_before

    assert len(statuses) == TOTAL
    assert set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}

    db = Database(base_settings(db_url, tmp_path))
    try:
        await check_stored(db, ws, plan)
    finally:
        await db.dispose()
    inbound = sum(len(v) for v in plan.inbound.values())
    echoes = sum(len(v) for v in plan.echoes.values())
    print(
        f"\nLOSSLESS [{backend}, {len(servers)} server process(es)]: {TOTAL} deliveries "
        f"({plan.unique} unique, {EXACT_DUPLICATES} exact duplicates, {CONCURRENT_DOUBLES} concurrent doubles) -> "
        f"{inbound + echoes} messages stored ({inbound} inbound, {echoes} echoes with {2 * echoes} shuffled statuses), "
        f"{CUSTOMERS} contacts, {CUSTOMERS} conversations; {elapsed:.2f}s = {TOTAL / elapsed:.0f} deliveries/s "
        f"at concurrency {CONCURRENCY} ({retries} transport-error retries); server CPU {cpu * 1000 / TOTAL:.1f} ms/delivery; load average {os.getloadavg()[0]:.1f}"
    )


def server_cpu_seconds(pid: int) -> float:
    """User+system CPU of a server process and its workers (from /proc)."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    total = 0.0
    for each in [str(pid), *children]:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def check_stored(db: Database, ws: str, plan: Plan) -> None:
    def read(conn: Any) -> dict[str, Any]:
        m, c, v = t.messages, t.contacts, t.conversations
        return {
            "messages": conn.execute(select(m).where(m.c.workspace_id == ws)).all(),
            "contacts": conn.execute(select(c).where(c.c.workspace_id == ws)).all(),
            "conversations": conn.execute(select(v).where(v.c.workspace_id == ws)).all(),
            "history": conn.execute(select(t.message_status_history).where(t.message_status_history.c.workspace_id == ws)).all(),
            "receipts": conn.execute(select(t.webhook_receipts.c.status, func.count()).where(t.webhook_receipts.c.workspace_id == ws)
                                     .group_by(t.webhook_receipts.c.status)).all(),
            "events": conn.execute(select(t.events.c.type, func.count()).where(t.events.c.workspace_id == ws).group_by(t.events.c.type)).all(),
        }

    stored = await db.read(read)
    messages = stored["messages"]
    expected_ids = {w for items in (*plan.inbound.values(), *plan.echoes.values()) for _, w, _ in items}
    assert len(messages) == len(expected_ids) and {m.provider_message_id for m in messages} == expected_ids

    contacts = {c.id: c for c in stored["contacts"]}
    assert sorted(c.phone_e164 for c in contacts.values()) == sorted(plan.inbound)
    conversations = {v.contact_id: v for v in stored["conversations"]}
    assert len(stored["conversations"]) == len(contacts) == CUSTOMERS and set(conversations) == set(contacts)

    by_phone = {c.phone_e164: c for c in contacts.values()}
    for phone, inbound in plan.inbound.items():
        conversation = conversations[by_phone[phone].id]
        assert conversation.unread_count == len(inbound), phone
        latest = max(inbound + plan.echoes[phone])
        assert conversation.last_message_preview == latest[2], phone
        assert conversation.last_message_at.timestamp() == latest[0]
    for m in messages:
        contact = contacts[m.contact_id]
        assert conversations[contact.id].id == m.conversation_id
        if m.direction == "inbound":
            assert m.status == "received"
        else:
            assert m.status == "read", (m.provider_message_id, m.status)

    history: dict[str, list[str]] = {}
    for h in stored["history"]:
        assert h.message_id is not None  # nothing left parked
        history.setdefault(h.provider_message_id, []).append(h.status)
    echoes = {w for items in plan.echoes.values() for _, w, _ in items}
    assert set(history) == echoes and all(sorted(s) == ["delivered", "read", "sent"] for s in history.values())

    assert dict(stored["receipts"]) == {"applied": plan.unique}
    events = dict(stored["events"])
    assert events["message.created"] == len(expected_ids)
    assert events["contact.created"] == CUSTOMERS and events["conversation.created"] == CUSTOMERS
