"""Measure realtime delivery and the server's footprint. Local only (127.0.0.1), bounded in count
and time.

    .venv/bin/python -m tests.realtime.measure --backend sqlite
    .venv/bin/python -m tests.realtime.measure --backend sqlite --fifo 20        # see below
    .venv/bin/python -m tests.realtime.measure --backend postgres   # two processes + private Redis
    .venv/bin/python -m tests.realtime.measure --floor "granian --interface asgi --port {port} tests.realtime.fanout_floor:app"

What is measured, and how the client is kept out of it:
- The server runs pinned to CPU 0 (``taskset -c 0``); the writer (this process) and the socket
  clients (``--clients`` processes of ``tests.realtime.loadclient``, raw asyncio protocols on
  uvloop) are pinned to CPU 1.
- Latency = a socket's arrival time of the write's last event − the moment the write's 200 was
  read, both ``time.monotonic()`` (CLOCK_MONOTONIC: one clock for all processes). The write is a
  signed Kapso webhook (``--write webhook``, a new inbound message: several events in one
  transaction) or a workspace PATCH (``--write patch``, one event).
- Server side, from ``KABAR_REALTIME_TRACE``: commit notification → the fan-out loop has handed the
  frames to every socket (sends that had to wait are counted as "deferred"), and the loop's CPU.
- ``--fifo P`` runs the server, the writer and the clients SCHED_FIFO at priority P, so other work
  on a shared machine (other people's test suites) cannot preempt them: the numbers then model a
  dedicated 2-core machine. Without it they include whatever else the machine is doing.
- Start-up = spawn of ``kabar serve`` → first ``/healthz`` 200; idle RSS after ``/readyz``; idle
  sockets = subscribed sockets that receive nothing, RSS of the server's process tree.
- ``--profile FILE`` samples the server with py-spy (``pip install py-spy``) during the
  many-socket run and writes collapsed stacks; ``--server granian`` measures the alternative.
- ``--floor "CMD"`` measures ``tests/realtime/fanout_floor.py`` under a server command instead
  (``{port}`` is replaced), for what the server alone costs per socket.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import RUN_ID, ServerProcess, _pg_admin, create_database, free_port, server_env
from tests.realtime.conftest import RedisServer
from tests.realtime.loadclient import ClientPool, pin
from tests.realtime.support import Site, Staff, patch_workspace, percentile

SERVER_CPU, CLIENT_CPU = 0, 1


def tree_rss_kib(pid: int) -> int:
    """RSS of a process and its descendants (granian runs the app in a child process)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry))
            except OSError:
                continue
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


class Server(ServerProcess):
    """A server process pinned to ``SERVER_CPU`` (optionally SCHED_FIFO); ``stop`` as in tests."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path, fifo: int):  # noqa: D107 - no super(): own argv
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        prefix = ["taskset", "-c", str(SERVER_CPU)] + (["chrt", "-f", str(fifo)] if fifo else [])
        self._log = open(log_path, "wb")  # noqa: SIM115
        self.log_path = log_path
        self.started = time.monotonic()
        argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.proc = subprocess.Popen(prefix + argv, env={**os.environ, **env}, stdout=self._log, stderr=subprocess.STDOUT)

    def wait(self, path: str, timeout: float = 60.0) -> float:
        """Seconds from spawn until ``path`` answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + path, timeout=1).status_code == 200:
                    return time.monotonic() - self.started
            except httpx.HTTPError:
                pass
            time.sleep(0.01)
        raise RuntimeError(f"server not ready: {self.log_path.read_text()[-2000:]}")

    def rss_kib(self) -> int:
        return tree_rss_kib(self.proc.pid)


def kabar_server(env: dict[str, str], log_path: Path, fifo: int) -> Server:
    return Server([sys.executable, "-m", "kabar", "serve", "--host", "127.0.0.1", "--port", "{port}"], env, log_path, fifo)


class Writer:
    """Writes that emit events: a signed Kapso webhook (a new inbound message) or a PATCH."""

    def __init__(self, http: httpx.AsyncClient, ws: str, owner: Staff, kind: str):
        self.http, self.ws, self.owner, self.kind = http, ws, owner, kind
        self.phone_number_id = f"rt-{secrets.token_hex(4)}"
        self.secret = f"rt-secret-{secrets.token_hex(8)}"

    async def setup(self) -> None:
        if self.kind == "webhook":
            response = await self.http.put(
                f"/v1/workspaces/{self.ws}/channel",
                json={"provider": "fake", "phone_number_id": self.phone_number_id, "display_phone_number": "+622100001",
                      "webhook_secret": self.secret, "api_key": "rt", "api_base_url": "http://127.0.0.1:9"},
                headers=self.owner.headers,
            )
            assert response.status_code in (200, 201), response.text

    async def write(self, i: int) -> float:
        """One write; returns ``time.monotonic()`` when its 200 was read."""
        if self.kind == "patch":
            await patch_workspace(self.http, self.ws, self.owner, i)
            return time.monotonic()
        from kabar.channels.fake import payloads

        message_id = f"wamid.rt.{self.phone_number_id}.{i}"
        body = payloads.encode(payloads.kapso_received(pnid=self.phone_number_id, phone=f"+62898{i % 50:07d}", text=f"realtime {i}", wamid=message_id))
        headers = payloads.kapso_headers(body, self.secret, "whatsapp.message.received", key=message_id)
        response = await self.http.post("/webhooks/kapso", content=body, headers=headers)
        at = time.monotonic()
        assert response.status_code == 200, response.text
        return at


def read_trace(path: Path) -> dict[int, list[float]]:
    """last seq of a fan-out → [subscribers, notified, read done, loop done, deferred, cpu]."""
    out: dict[int, list[float]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            first, last, *rest = line.split()
            out[int(last)] = [float(x) for x in rest]
    return out


def ms(values: list[float], p: float) -> float:
    return percentile(values, p) * 1000 if values else float("nan")


async def latency_run(
    server: Server, writer_server: Server, site: Site, pool: ClientPool, sockets: int, writes: int, kind: str, trace: Path | None, profile: Path | None = None
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=writer_server.url, timeout=60) as http:
        ws, owner = await site.workspace(http)
        writer = Writer(http, ws, owner, kind)
        await writer.setup()
        opened = await pool.open("127.0.0.1", server.port, f"/v1/workspaces/{ws}/realtime?token={owner.token}", sockets)
        assert opened["open"] == sockets, opened
        after = (await pool.status())[1]
        profiler = None
        if profile is not None and sockets > 1:
            # Sampling profile of the server during the writes (py-spy, collapsed stacks).
            profiler = subprocess.Popen(
                ["py-spy", "record", "--nonblocking", "--subprocesses", "--rate", "500", "--format", "raw",
                 "-o", str(profile), "--pid", str(server.proc.pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            await asyncio.sleep(1)
        per_delivery: list[float] = []
        last: list[float] = []
        seqs: list[int] = []
        answered_at: list[float] = []
        try:
            for i in range(writes + 3):  # the first 3 warm up (first webhook creates the contact)
                answered = await writer.write(i)
                after = await pool.settled(after)
                if i < 3:
                    continue
                arrived = (await pool.arrivals([after]))[after]
                assert len(arrived) == sockets, (after, len(arrived))
                lat = [a - answered for a in arrived]
                per_delivery += lat
                last.append(max(lat))
                seqs.append(after)
                answered_at.append(answered)
                await asyncio.sleep(0.03)
            await pool.clear()
        finally:
            if profiler is not None:
                profiler.send_signal(2)
                profiler.wait(timeout=30)
            await pool.close()
    result: dict[str, Any] = {
        "p50_ms": ms(per_delivery, 50), "p95_ms": ms(per_delivery, 95),
        "last_socket_p50_ms": ms(last, 50), "last_socket_p95_ms": ms(last, 95), "last_socket_max_ms": ms(last, 100),
    }
    if trace is not None:
        lines = read_trace(trace)
        found = [(lines[s], a) for s, a in zip(seqs, answered_at, strict=True) if s in lines]
        if found:
            result["server_notify_to_sent_p50_ms"] = ms([t[3] - t[1] for t, _ in found], 50)
            result["server_notify_to_sent_p95_ms"] = ms([t[3] - t[1] for t, _ in found], 95)
            result["server_fanout_loop_p50_ms"] = ms([t[3] - t[2] for t, _ in found], 50)
            result["server_fanout_cpu_p50_ms"] = ms([t[5] for t, _ in found], 50)
            result["deferred_sends_max"] = max(t[4] for t, _ in found)
            result["notify_before_200_p50_ms"] = ms([a - t[1] for t, a in found], 50)
    return result


async def idle_run(server: Server, site: Site, pool: ClientPool, sockets: int, kind: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        ws, owner = await site.workspace(http)
        writer = Writer(http, ws, owner, kind)
        await writer.setup()
        await writer.write(0)
        await asyncio.sleep(1)
        before = server.rss_kib()
        opened = await pool.open("127.0.0.1", server.port, f"/v1/workspaces/{ws}/realtime?token={owner.token}", sockets, concurrency=100)
        await asyncio.sleep(3)  # settle
        after = server.rss_kib()
        # Still alive and live: one write reaches every idle socket.
        seq = (await pool.status())[1]
        answered = await writer.write(1)
        seq = await pool.settled(seq, timeout=120)
        fanout = max((await pool.arrivals([seq]))[seq]) - answered
        await pool.clear()
        await pool.close()
    return {
        "open": opened["open"], "failed": opened["failed"],
        "rss_before_mib": before / 1024, "rss_with_sockets_mib": after / 1024,
        "kib_per_socket": (after - before) / max(1, opened["open"]),
        "connect_seconds": opened["seconds"], "write_to_last_socket_ms": fanout * 1000,
    }


async def floor_run(args: argparse.Namespace, tmp: Path) -> None:
    """The same sockets against ``fanout_floor`` (no Litestar, no Kabar) under a given server."""
    server = Server(args.floor.split(), {"FLOOR_MODE": args.floor_mode, "PYTHONPATH": os.getcwd()}, tmp / "floor.log", args.fifo)
    pool = ClientPool(args.clients, {CLIENT_CPU}, args.fifo)
    try:
        server.wait("/rss")
        await pool.count()
        for n in [int(x) for x in args.sockets.split(",")]:
            before = server.rss_kib()
            opened = await pool.open("127.0.0.1", server.port, "/ws", n)
            await asyncio.sleep(2)
            after = server.rss_kib()
            loop_ms: list[float] = []
            cpu_ms: list[float] = []
            last: list[float] = []
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
                for _ in range(args.writes):
                    body = (await http.post("/broadcast")).json()
                    await pool.wait_seq(body["seq"])
                    arrived = (await pool.arrivals([body["seq"]]))[body["seq"]]
                    last.append(max(arrived) - body["t0"])
                    loop_ms.append(body["t1"] - body["t0"])
                    cpu_ms.append(body["cpu"])
                    await asyncio.sleep(0.03)
            await pool.clear()
            await pool.close()
            print(
                f"[floor {args.floor_mode}] {n} sockets: open {opened['open']} in {opened['seconds']:.1f}s, "
                f"{(after - before) / max(1, n):.1f} KiB/socket; send loop P50/P95 {ms(loop_ms, 50):.1f}/{ms(loop_ms, 95):.1f} ms "
                f"(loop-thread CPU P50 {ms(cpu_ms, 50):.1f} ms); first send → last socket P50/P95 {ms(last, 50):.1f}/{ms(last, 95):.1f} ms",
                flush=True,
            )
    finally:
        await pool.stop()
        server.stop()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--server", choices=["uvicorn", "granian"], default=None, help="KABAR_SERVER for kabar serve")
    parser.add_argument("--write", choices=["webhook", "patch"], default="webhook")
    parser.add_argument("--writes", type=int, default=100)
    parser.add_argument("--sockets", default="1,1000")
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--fifo", type=int, default=0, help="SCHED_FIFO priority for server and clients (0: normal)")
    parser.add_argument("--floor", default=None, help="measure tests.realtime.fanout_floor under this server command")
    parser.add_argument("--floor-mode", default="sequential")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy collapsed stacks of the server during the many-socket run")
    args = parser.parse_args()
    pin({CLIENT_CPU}, args.fifo)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = Path(tempfile.mkdtemp(prefix="kabar-rt-measure-"))
    if args.floor:
        await floor_run(args, tmp)
        return
    name = f"measure_{secrets.token_hex(3)}"
    url = await asyncio.to_thread(create_database, args.backend, tmp, name)
    servers: list[Server] = []
    redis = None
    pool = None
    trace = tmp / "trace.txt"
    label = f"[{args.backend}, {args.server or 'default server'}, {args.write}{', fifo' if args.fifo else ''}]"
    try:
        extra = {"KABAR_LOG_LEVEL": "ERROR", "KABAR_REALTIME_TRACE": str(trace)}
        if args.server:
            extra["KABAR_SERVER"] = args.server
        if args.backend == "postgres":
            redis = RedisServer(tmp)
            redis.start()
            extra["KABAR_REDIS_URL"] = redis.url
            extra["KABAR_REALTIME_SAFETY_POLL_SECONDS"] = "60"
        env = server_env(url, tmp, **extra)
        for _ in range(2 if args.backend == "postgres" else 1):
            servers.append(kabar_server(env, tmp / f"server-{len(servers)}.log", args.fifo))
        startup = [server.wait("/healthz") for server in servers]
        for server in servers:
            server.wait("/readyz")
        await asyncio.sleep(2)
        print(f"{label} start-up (spawn → /healthz 200): {startup[0]:.2f} s; idle RSS {servers[0].rss_kib() / 1024:.1f} MiB", flush=True)
        reader, writer = servers[0], servers[-1]
        site = Site(url, tmp)
        pool = ClientPool(args.clients, {CLIENT_CPU}, args.fifo)
        await pool.count()
        for n in [int(x) for x in args.sockets.split(",") if x]:
            result = await latency_run(reader, writer, site, pool, n, args.writes, args.write, trace if args.backend == "sqlite" else None, args.profile)
            print(f"{label} {n} socket(s), {args.writes} writes: " + ", ".join(f"{k}={v:.1f}" for k, v in result.items()), flush=True)
        if args.idle:
            result = await idle_run(reader, site, pool, args.idle, args.write)
            print(f"{label} {args.idle} idle sockets: " + ", ".join(f"{k}={v:.1f}" for k, v in result.items()), flush=True)
        await site.db.dispose()
    finally:
        if pool is not None:
            await pool.stop()
        for server in servers:
            server.stop()
        if redis:
            redis.stop()
        if args.backend == "postgres":
            await asyncio.to_thread(_pg_admin, f'DROP DATABASE IF EXISTS "kabar_test_{RUN_ID}_{name}" WITH (FORCE)')


if __name__ == "__main__":
    asyncio.run(main())
