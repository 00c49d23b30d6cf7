"""Helpers for the fault suite: kill a ``kabar serve`` hard, a throwaway PostgreSQL cluster, and a
webhook sender that behaves like a provider (retries every delivery until it gets a 200).

Processes are always stopped by their own PID; nothing here touches the machine's shared
PostgreSQL or Redis.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import Any

import httpx

from kabar.channels.fake import payloads as p


# -- killing a server ---------------------------------------------------------------------------


def children_of(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (``kabar serve`` is a granian supervisor plus its workers)."""
    found = []
    for stat in glob("/proc/[0-9]*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(Path(stat).parent.name))
    return found


def kill_hard(server: Any) -> None:
    """``kill -9`` a ``kabar serve``: its workers first (they hold the requests), then the supervisor."""
    pid = server.proc.pid
    workers = children_of(pid)
    for child in workers:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{child}").exists() and _state(child) != "Z" for child in workers):
        assert time.monotonic() < deadline, f"workers {workers} of {pid} survived SIGKILL"
        time.sleep(0.01)
    wait_port_closed(server.port)


def _state(pid: int) -> str:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return text[text.rfind(")") + 2]


def wait_port_closed(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                pass
        except OSError:
            return
        time.sleep(0.02)
    raise AssertionError(f"port {port} still accepts connections")


# -- a throwaway PostgreSQL cluster -------------------------------------------------------------


class PgCluster:
    """A private PostgreSQL cluster on a free port, so the test may stop and start it at will
    (the machine's shared server on 5432 is used by every other test and is never touched)."""

    def __init__(self, port: int):
        bindir = sorted(glob("/usr/lib/postgresql/*/bin"))
        assert bindir, "PostgreSQL server binaries (/usr/lib/postgresql/*/bin) are required for the fault suite"
        self.bin = Path(bindir[-1])
        self.port = port
        # Owned by the ``postgres`` user when we are root (initdb refuses to run as root).
        self.dir = Path(tempfile.mkdtemp(prefix="kabar-fault-pg-"))
        self.data = self.dir / "data"
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / tool), *args]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stdout}\n{done.stderr}")
        return done

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, dbname: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.dir / "server.log"), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def create_database(self, name: str) -> str:
        import asyncpg

        async def run() -> None:
            conn = await asyncpg.connect(self.admin_url, timeout=10)
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        asyncio.run(run())
        return self.url(name)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


# -- a provider that retries until acknowledged ---------------------------------------------------


@dataclass
class Delivery:
    raw: bytes
    headers: dict[str, str]
    wamids: list[str]


@dataclass
class Plan:
    deliveries: list[Delivery]
    messages: dict[str, str]  # wamid -> customer phone

    @property
    def customers(self) -> set[str]:
        return set(self.messages.values())


def inbound_plan(pnid: str, secret: str, *, deliveries: int, customers: int, seed: int = 9) -> Plan:
    """Signed Kapso deliveries of inbound texts (some as batches), each under its own idempotency key."""
    rng = random.Random(seed)
    phones = [f"+62813{7000000 + i * 131:07d}" for i in range(customers)]
    out: list[Delivery] = []
    messages: dict[str, str] = {}
    for n in range(deliveries):
        phone = rng.choice(phones)
        size = rng.choice([1, 1, 1, 1, 1, 2, 3])
        items = []
        for _ in range(size):
            wamid = "wamid.FAULT." + secrets.token_hex(10)
            messages[wamid] = phone
            items.append(p.kapso_received(pnid=pnid, phone=phone, text=f"Pesan {n} ({wamid[-6:]})", wamid=wamid, name=f"Pelanggan {phone[-4:]}"))
        doc = items[0] if size == 1 else p.kapso_batch(items)
        raw = p.encode(doc)
        headers = p.kapso_headers(raw, secret, "whatsapp.message.received", key=secrets.token_hex(12), batch=None if size == 1 else size)
        out.append(Delivery(raw, headers, [i["message"]["id"] for i in items]))
    return Plan(out, messages)


@dataclass
class Sender:
    """Posts every delivery until it is answered 200, as a provider does; counts what it saw."""

    url: str
    concurrency: int = 16
    deadline_seconds: float = 240.0
    acknowledged: int = 0
    attempts: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    acked_wamids: set[str] = field(default_factory=set)

    async def run(self, plan: Plan) -> None:
        slots = asyncio.Semaphore(self.concurrency)
        deadline = time.monotonic() + self.deadline_seconds
        async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=self.concurrency * 2)) as http:

            async def deliver(delivery: Delivery) -> None:
                async with slots:
                    while True:
                        assert time.monotonic() < deadline, f"delivery not acknowledged in {self.deadline_seconds}s: {self.outcomes}"
                        self.attempts += 1
                        try:
                            response = await http.post(self.url + "/webhooks/kapso", content=delivery.raw, headers=delivery.headers)
                            outcome = str(response.status_code)
                        except httpx.HTTPError as exc:
                            outcome = type(exc).__name__
                        self.outcomes[outcome] += 1
                        if outcome == "200":
                            self.acknowledged += 1
                            self.acked_wamids.update(delivery.wamids)
                            return
                        await asyncio.sleep(0.05 + random.random() * 0.1)

            await asyncio.gather(*(deliver(d) for d in plan.deliveries))

    async def wait_acknowledged(self, n: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.acknowledged < n:
            assert time.monotonic() < deadline, f"only {self.acknowledged} of {n} deliveries acknowledged: {self.outcomes}"
            await asyncio.sleep(0.01)


async def login(http: httpx.AsyncClient, email: str, password: str) -> dict[str, str]:
    response = await http.post("/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


# -- what was stored ------------------------------------------------------------------------------


@dataclass
class Stored:
    messages: int
    distinct: int
    missing: set[str]
    duplicates: int
    contacts: int
    conversations: int
    unread_ok: bool
    created_events: int


async def stored_state(db: Any, ws: str, plan: Plan) -> Stored:
    """Compare the workspace's rows with the plan: lost, duplicated, counted twice."""
    from sqlalchemy import func, select

    from kabar.db import tables as t

    def read(conn: Any) -> dict[str, Any]:
        m, c, v, e = t.messages, t.contacts, t.conversations, t.events
        return {
            "wamids": [r[0] for r in conn.execute(select(m.c.provider_message_id).where(m.c.workspace_id == ws))],
            "contacts": conn.execute(select(c.c.id, c.c.phone_e164).where(c.c.workspace_id == ws)).all(),
            "conversations": conn.execute(select(v.c.contact_id, v.c.unread_count).where(v.c.workspace_id == ws)).all(),
            "created": conn.execute(select(func.count()).select_from(e).where(e.c.workspace_id == ws, e.c.type == "message.created")).scalar_one(),
        }

    rows = await db.read(read)
    wamids = rows["wamids"]
    phone_of = {cid: phone for cid, phone in rows["contacts"]}
    expected_unread = Counter(plan.messages.values())
    unread_ok = all(expected_unread[phone_of[cid]] == unread for cid, unread in rows["conversations"])
    return Stored(
        messages=len(wamids),
        distinct=len(set(wamids)),
        missing=set(plan.messages) - set(wamids),
        duplicates=len(wamids) - len(set(wamids)),
        contacts=len(rows["contacts"]),
        conversations=len(rows["conversations"]),
        unread_ok=unread_ok,
        created_events=rows["created"],
    )


def assert_exactly_once(stored: Stored, plan: Plan, sender: Sender) -> None:
    assert not (sender.acked_wamids - set(plan.messages)), "acknowledged something not in the plan"
    lost = sender.acked_wamids & stored.missing
    assert not lost, f"{len(lost)} acknowledged messages lost"
    assert stored.duplicates == 0, f"{stored.duplicates} duplicate messages"
    assert stored.messages == len(plan.messages) and not stored.missing
    assert stored.contacts == stored.conversations == len(plan.customers)
    assert stored.unread_ok, "unread counts differ from the messages received (a delivery counted twice?)"
    assert stored.created_events == len(plan.messages), "message.created events are not one per message"


async def kapso_channel(http: httpx.AsyncClient, ws: str, headers: dict[str, str], api_base_url: str = "http://127.0.0.1:9/meta/whatsapp/v24.0") -> tuple[str, str]:
    """Connect a Kapso channel to the workspace over the API; returns (phone_number_id, webhook secret)."""
    pnid, secret = "pn-fault-" + secrets.token_hex(4), "whsec-" + secrets.token_hex(12)
    body = {"provider": "kapso", "phone_number_id": pnid, "api_key": "key-" + secrets.token_hex(8), "webhook_secret": secret,
            "api_base_url": api_base_url}
    response = await http.put(f"/v1/workspaces/{ws}/channel", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return pnid, secret
