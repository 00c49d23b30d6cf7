"""Measure the inbox list's latency against a real ``kabar serve`` (not a test; run by hand).

    .venv/bin/python tests/conversations/measure_list_latency.py --db sqlite --conversations 100000
    .venv/bin/python tests/conversations/measure_list_latency.py --db postgres --conversations 100000

Seeds one workspace with N contacts, each with a conversation and one message (bulk insert),
starts ``kabar serve`` on a free port, then sends sequential requests over one keep-alive
connection (closed loop: latency without queueing) and prints P50/P95/P99 per request shape,
the server's own Server-Timing median, and the server process's CPU time per request (on a
busy machine the CPU time is the steadier figure; on SQLite all of a request's work is in it,
on PostgreSQL the database backend's share is not).
The server is stopped by its PID; the PostgreSQL database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import insert, text

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from kabar.auth.service import create_user  # noqa: E402
from kabar.config import load_settings  # noqa: E402
from kabar.db import tables as t  # noqa: E402
from kabar.db.engine import Database  # noqa: E402
from kabar.db.migrate import upgrade  # noqa: E402
from kabar.db.types import utcnow  # noqa: E402
from kabar.workspaces.service import create_workspace  # noqa: E402
from tests.conftest import _pg_admin, _pg_url, free_port  # noqa: E402
from tests.conversations.seed import contact_row, conversation_row, message_row  # noqa: E402

PASSWORD = "measure-password-123"


async def seed(url: str, n: int) -> tuple[str, str, str, str]:
    db = Database(load_settings({"KABAR_DATABASE_URL": url}))
    owner_email, agent_email = f"owner-{secrets.token_hex(3)}@m.test", f"agent-{secrets.token_hex(3)}@m.test"

    def people(uow):  # noqa: ANN001, ANN202
        owner = create_user(uow, email=owner_email, password=PASSWORD, name="Owner")
        agent = create_user(uow, email=agent_email, password=PASSWORD, name="Agent")
        ws = create_workspace(uow, owner_id=owner, name="Latency")
        uow.conn.execute(insert(t.members).values(workspace_id=ws.id, user_id=agent, role="member", settings={}, created_at=uow.now))
        return ws.id, owner, agent

    ws, owner, agent = await db.transaction(people)
    rng = random.Random(1)
    now = utcnow()
    chunk = 5000
    for start in range(0, n, chunk):
        contacts, conversations, messages = [], [], []
        for i in range(start, min(n, start + chunk)):
            at = now - timedelta(seconds=rng.randint(60, 90 * 86400))
            assignee = rng.choice([None, None, owner, agent])
            contact = contact_row(ws, phone=f"+62858{i:08d}", name=f"Pelanggan {i}", tags=rng.sample(["vip", "uk", "s2", "beasiswa", "webinar"], rng.randint(0, 2)),
                                  lead_status=rng.choice(["prospect", "prospect", "hot_lead", "cold_lead", "client", "lost"]), assignee_id=assignee)
            conv = conversation_row(ws, contact, status=rng.choice(["open"] * 14 + ["pending"] * 3 + ["closed"] * 3), assignee_id=assignee,
                                    unread=rng.choice([0] * 9 + [1, 3]), last_message_at=at, last_inbound_at=at)
            contacts.append(contact)
            conversations.append(conv)
            messages.append(message_row(ws, conv, at=at))

        def write(uow, contacts=contacts, conversations=conversations, messages=messages):  # noqa: ANN001, ANN202
            uow.conn.execute(insert(t.contacts), contacts)
            uow.conn.execute(insert(t.conversations), conversations)
            uow.conn.execute(insert(t.messages), messages)

        await db.transaction(write)
        print(f"  seeded {min(n, start + chunk)}/{n}", end="\r", flush=True)
    if db.is_sqlite:
        await db.transaction(lambda uow: uow.conn.execute(text("ANALYZE")))
    else:  # as autovacuum would (statistics, and the GIN pending list of the bulk insert)
        async with db.async_engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE"))
    await db.dispose()
    print()
    return ws, owner_email, agent_email, agent


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children so far (Linux /proc)."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        total += cpu_seconds(int(child))
    return total


def measure(base: str, headers: dict[str, str], path: str, params: dict, requests: int, server_pid: int) -> dict[str, float]:
    timings, server = [], []
    with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
        for _ in range(50):  # warm-up
            client.get(path, params=params).raise_for_status()
        cpu0 = cpu_seconds(server_pid)
        for _ in range(requests):
            t0 = time.perf_counter()
            response = client.get(path, params=params)
            timings.append((time.perf_counter() - t0) * 1000)
            response.raise_for_status()
            app = response.headers.get("server-timing", "").rsplit("app;dur=", 1)[-1]
            server.append(float(app) if app else 0.0)
    cpu = (cpu_seconds(server_pid) - cpu0) / requests * 1000
    q = statistics.quantiles(timings, n=100)
    return {"p50": q[49], "p95": q[94], "p99": q[98], "server_p50": statistics.median(server), "cpu": cpu, "body": len(response.content)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--only", help="measure only the request shapes whose name contains this")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--nice", type=int, default=0, help="niceness for this script and the server (-10 as root on a busy machine)")
    parser.add_argument("--reuse", help="the folder of an earlier --keep run (skips seeding)")
    parser.add_argument("--keep", action="store_true", help="keep the database (PostgreSQL: not dropped) for --reuse")
    args = parser.parse_args()
    os.nice(args.nice)
    tmp = Path(args.reuse) if args.reuse else Path(tempfile.mkdtemp(prefix="kabar-latency-"))
    pg_name = None
    if args.db == "sqlite":
        url = f"sqlite:///{tmp / 'kabar.db'}"
    elif args.reuse:
        pg_name = (tmp / "pg_name").read_text()
        url = _pg_url(pg_name)
    else:
        pg_name = f"kabar_latency_{secrets.token_hex(3)}"
        _pg_admin(f'CREATE DATABASE "{pg_name}"')
        (tmp / "pg_name").write_text(pg_name)
        url = _pg_url(pg_name)
    server = None
    try:
        if args.reuse:
            ws, owner_email, agent_email, agent_id = json.loads((tmp / "seed.json").read_text())
        else:
            upgrade(url)
            t0 = time.perf_counter()
            ws, owner_email, agent_email, agent_id = asyncio.run(seed(url, args.conversations))
            print(f"seeded {args.conversations} conversations in {time.perf_counter() - t0:.0f}s into {tmp}")
            (tmp / "seed.json").write_text(json.dumps([ws, owner_email, agent_email, agent_id]))
        port = free_port()
        env = {**os.environ, "KABAR_DATABASE_URL": url, "KABAR_DATA_DIR": str(tmp / "data"), "KABAR_LOG_LEVEL": "WARNING"}
        log = open(tmp / "server.log", "wb")  # noqa: SIM115
        server = subprocess.Popen([sys.executable, "-m", "kabar", "serve", "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit((tmp / "server.log").read_text()[-2000:])
            time.sleep(0.1)

        def login(email: str) -> dict[str, str]:
            token = httpx.post(base + "/v1/auth/login", json={"email": email, "password": PASSWORD}).json()["token"]
            return {"Authorization": f"Bearer {token}"}

        owner, agent = login(owner_email), login(agent_email)
        path = f"/v1/workspaces/{ws}/conversations"
        with httpx.Client(base_url=base, headers=owner) as client:
            cursor = client.get(path).json()["next_cursor"]
        shapes = [
            ("page 1 (owner, no filter)", owner, {}),
            ("page 2 (cursor)", owner, {"cursor": cursor}),
            ("unread=true", owner, {"unread": "true"}),
            ("status=pending", owner, {"status": "pending"}),
            ("assignee_id=<agent>", owner, {"assignee_id": agent_id}),
            ("member's inbox", agent, {}),
            ("lead_status=hot_lead", owner, {"lead_status": "hot_lead"}),
            ("tag=vip", owner, {"tag": "vip"}),
            ("q=pelanggan 4242", owner, {"q": "Pelanggan 4242"}),
        ]
        print(f"{args.db}, {args.conversations} conversations, {args.requests} sequential requests each, limit 50")
        print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"{'request':28} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'server p50':>11} {'cpu ms/req':>10} {'bytes':>7}")
        for name, headers, params in shapes:
            if args.only and args.only not in name:
                continue
            r = measure(base, headers, path, params, args.requests, server.pid)
            print(f"{name:28} {r['p50']:8.2f} {r['p95']:8.2f} {r['p99']:8.2f} {r['server_p50']:11.2f} {r['cpu']:10.2f} {r['body']:7d}")
    finally:
        if server is not None and server.poll() is None:
            server.terminate()
            server.wait(timeout=15)
        if pg_name and not args.keep:
            _pg_admin(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
