"""``kabar bench``: seed a realistic dataset, start Kabar (and the floor), drive fixed-rate workloads.

The server runs pinned to CPU 0 and this load generator to CPU 1 (when the machine has two), so
the generator does not steal the server's core.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec

from kabar.bench import loadgen
from kabar.bench.dataset import BenchWorkspace
from kabar.bench.loadgen import Request
from kabar.channels.fake import payloads

WORKLOADS = ("by-phone", "list", "list-filtered", "thread", "ingest", "send", "realtime", "floor")
DEFAULT_RATES = {
    "by-phone": 1000, "list": 500, "list-filtered": 500, "thread": 500, "ingest": 1000, "send": 200, "floor": 1000,
}


@dataclass
class BenchConfig:
    db: str = "sqlite"
    url: str | None = None
    scale: int = 100_000
    workspaces: int = 3
    messages_per_conversation: int = 10
    duration: float = 10.0
    warmup: float = 2.0
    max_duration: float = 5.0
    connections: int = 32
    sockets: tuple[int, ...] = (1, 1000)
    workloads: tuple[str, ...] = WORKLOADS
    rates: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RATES))
    out: Path = Path("bench-results")
    keep_data: bool = False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pin_to_cpu(cpu: int) -> list[str]:
    """Pin this process to ``cpu``; returns the taskset prefix that pins a child to the other one."""
    if (os.cpu_count() or 1) < 2 or not hasattr(os, "sched_setaffinity"):
        return []
    os.sched_setaffinity(0, {cpu})
    return ["taskset", "-c", str(1 - cpu)]


class Process:
    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path):
        self.log = open(log_path, "wb")  # noqa: SIM115
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_http(self, url: str, timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.proc.args} exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return time.perf_counter() - self.started
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"{url} not ready after {timeout}s; see {self.log.name}")

    def rss_mb(self) -> float:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# -- request factories -----------------------------------------------------------------------


def _json_ok(status_expected: int, check: Callable[[Any], bool]) -> loadgen.Validator:
    def validate(status: int, body: bytes) -> str | None:
        if status != status_expected:
            return f"status {status}"
        try:
            doc = msgspec.json.decode(body)
        except msgspec.DecodeError:
            return "body is not JSON"
        return None if check(doc) else "unexpected body shape"

    return validate


def _by_phone_valid(doc: Any) -> bool:
    return doc.get("found") is True and {"id", "phone", "lead_status"} <= doc["contact"].keys() and isinstance(doc.get("recent_messages"), list) and isinstance(doc.get("notes"), list)


def _list_valid(doc: Any) -> bool:
    return isinstance(doc.get("data"), list) and "total_count" in doc and all("contact" in row for row in doc["data"])


def phone_formats(e164: str) -> list[str]:
    """The same person written the ways people and systems write it."""
    return [e164, e164[1:], "0" + e164[3:], f"+62 {e164[3:6]}-{e164[6:10]}-{e164[10:]}"]


def by_phone_factory(bw: BenchWorkspace, rng: random.Random) -> loadgen.RequestFactory:
    headers = (("Authorization", f"Bearer {bw.api_key}"),)
    validate = _json_ok(200, _by_phone_valid)
    from urllib.parse import quote

    def make(i: int) -> Request:
        phone = rng.choice(phone_formats(rng.choice(bw.phones)))
        return Request("GET", f"/v1/workspaces/{bw.id}/contacts/by-phone?phone={quote(phone)}", headers, validate=validate)

    return make


def list_factory(bw: BenchWorkspace, query: str) -> loadgen.RequestFactory:
    headers = (("Authorization", f"Bearer {bw.session_token}"),)
    request = Request("GET", f"/v1/workspaces/{bw.id}/conversations?{query}", headers, validate=_json_ok(200, _list_valid))
    return lambda i: request


def thread_factory(bw: BenchWorkspace, rng: random.Random) -> loadgen.RequestFactory:
    headers = (("Authorization", f"Bearer {bw.session_token}"),)
    validate = _json_ok(200, lambda d: isinstance(d.get("data"), list) and len(d["data"]) > 0)

    def make(i: int) -> Request:
        return Request("GET", f"/v1/workspaces/{bw.id}/conversations/{rng.choice(bw.conversation_ids)}/messages?limit=50", headers, validate=validate)

    return make


def send_factory(bw: BenchWorkspace, rng: random.Random) -> loadgen.RequestFactory:
    headers = (("Authorization", f"Bearer {bw.session_token}"), ("Content-Type", "application/json"))
    validate = _json_ok(202, lambda d: d.get("status") == "pending" and "id" in d)

    def make(i: int) -> Request:
        body = msgspec.json.encode({"type": "text", "text": f"Terima kasih, pesan #{i} kami terima 🙏"})
        return Request("POST", f"/v1/workspaces/{bw.id}/conversations/{rng.choice(bw.conversation_ids)}/messages", headers, body, validate)

    return make


def ingest_factory(bw: BenchWorkspace, rng: random.Random, run_tag: str) -> loadgen.RequestFactory:
    """Signed, unique Kapso ``whatsapp.message.received`` webhooks, built by the fake provider's builder."""
    validate = lambda status, body: None if status == 200 else f"status {status}"  # noqa: E731
    customers = [f"+62899{n:07d}" for n in range(2000)]

    def make(i: int) -> Request:
        body = payloads.encode(payloads.kapso_received(
            pnid=bw.phone_number_id, phone=rng.choice(customers), text=f"Halo, pesan {i}", wamid=f"wamid.bench.{run_tag}.{i}", name="Pelanggan",
        ))
        headers = payloads.kapso_headers(body, bw.webhook_secret, "whatsapp.message.received", key=f"{run_tag}-{i}")
        return Request("POST", "/webhooks/kapso", tuple(headers.items()), body, validate)

    return make


def floor_factory(bw: BenchWorkspace, rng: random.Random) -> loadgen.RequestFactory:
    validate = _json_ok(200, lambda d: d.get("found") is True)
    from urllib.parse import quote

    def make(i: int) -> Request:
        return Request("GET", f"/floor/{bw.id}/contact?phone={quote(rng.choice(bw.phones))}", validate=validate)

    return make


# -- realtime ---------------------------------------------------------------------------------


async def realtime_latency(base_url: str, bw: BenchWorkspace, sockets: int, events: int, rate: float, rng: random.Random) -> dict[str, Any]:
    """Webhook → arrival at subscribers: P50/P95 to the first and to the last socket, timed from
    when the webhook was sent (its processing and commit included). Timed from its 200 instead,
    the event often arrives first (it is published before the response is written), so the
    figures are an upper bound of "200 → subscriber"; ``before_200`` counts those arrivals."""
    import websockets

    ws_url = base_url.replace("http://", "ws://") + f"/v1/workspaces/{bw.id}/realtime?token={bw.session_token}"
    sent: dict[str, float] = {}
    acked: dict[str, float] = {}
    first_seen: dict[str, float] = {}
    last_seen: dict[str, float] = {}
    seen_count: dict[str, int] = {}
    connections = []

    async def listen(conn: Any) -> None:
        async for raw in conn:
            msg = json.loads(raw)
            if msg.get("op") != "event" or msg.get("type") != "message.created":
                continue
            provider_id = (msg.get("data") or {}).get("provider_message_id") or ""
            if not provider_id.startswith("wamid.rt."):
                continue
            now = time.perf_counter()
            first_seen.setdefault(provider_id, now)
            last_seen[provider_id] = now
            seen_count[provider_id] = seen_count.get(provider_id, 0) + 1

    for _ in range(sockets):
        conn = await websockets.connect(ws_url, max_queue=None, open_timeout=30)
        await conn.send(json.dumps({"op": "subscribe", "since": None}))
        connections.append(conn)
    listeners = [asyncio.create_task(listen(c)) for c in connections]
    await asyncio.sleep(0.5)  # let every subscription reach the live phase before sending
    tag = f"{os.getpid()}{int(time.time())}"
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        for i in range(events):
            provider_id = f"wamid.rt.{tag}.{i}"
            body = payloads.encode(payloads.kapso_received(pnid=bw.phone_number_id, phone=f"+62898{i % 50:07d}", text=f"realtime {i}", wamid=provider_id))
            headers = payloads.kapso_headers(body, bw.webhook_secret, "whatsapp.message.received", key=provider_id)
            sent[provider_id] = time.perf_counter()
            response = await client.post("/webhooks/kapso", content=body, headers=headers)
            if response.status_code == 200:
                acked[provider_id] = time.perf_counter()
            await asyncio.sleep(1 / rate)
    deadline = time.perf_counter() + 10
    while time.perf_counter() < deadline and any(seen_count.get(k, 0) < sockets for k in acked):
        await asyncio.sleep(0.05)
    for task in listeners:
        task.cancel()
    for conn in connections:
        await conn.close()
    first = [(first_seen[k] - sent[k]) * 1000 for k in acked if k in first_seen]
    last = [(last_seen[k] - sent[k]) * 1000 for k in acked if seen_count.get(k) == sockets]
    return {
        "sockets": sockets,
        "events": events,
        "acked": len(acked),
        "complete": len(last),
        "before_200": sum(1 for k in acked if first_seen.get(k, float("inf")) < acked[k]),
        "first_p50_ms": round(loadgen.percentile(first, 50), 2),
        "first_p95_ms": round(loadgen.percentile(first, 95), 2),
        "last_p50_ms": round(loadgen.percentile(last, 50), 2),
        "last_p95_ms": round(loadgen.percentile(last, 95), 2),
    }


# -- orchestration ----------------------------------------------------------------------------


def database_url(config: BenchConfig) -> str:
    if config.db == "sqlite":
        config.out.mkdir(parents=True, exist_ok=True)
        path = (config.out / "bench.db").resolve()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{path}"
    base = os.environ.get("KABAR_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    import asyncpg

    async def recreate() -> None:
        conn = await asyncpg.connect(base)
        try:
            await conn.execute('DROP DATABASE IF EXISTS "kabar_bench" WITH (FORCE)')
            await conn.execute('CREATE DATABASE "kabar_bench"')
        finally:
            await conn.close()

    asyncio.run(recreate())
    return base.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + "/kabar_bench"


async def _drive(config: BenchConfig, base_url: str, floor_url: str | None, workspaces: list[BenchWorkspace], log: Callable[[str], None]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rng = random.Random(7)
    bw = workspaces[0]
    host, port = base_url.removeprefix("http://").split(":")
    port_n = int(port)
    results: list[dict[str, Any]] = []
    extras: dict[str, Any] = {}
    run_tag = f"{int(time.time())}"

    factories: dict[str, Callable[[], loadgen.RequestFactory]] = {
        "by-phone": lambda: by_phone_factory(bw, rng),
        "list": lambda: list_factory(bw, "limit=50"),
        "list-filtered": lambda: list_factory(bw, "limit=50&status=open&status=pending&lead_status=hot_lead&lead_status=prospect"),
        "thread": lambda: thread_factory(bw, rng),
        "ingest": lambda: ingest_factory(bw, rng, run_tag),
        "send": lambda: send_factory(bw, rng),
    }
    # Realtime first, on a server with no backlog: the send workload leaves status webhooks and
    # jobs queued behind it that would be timed as delivery latency.
    if "realtime" in config.workloads:
        for n in config.sockets:
            log(f"realtime: webhook 200 → {n} subscriber socket(s)")
            try:
                extras[f"realtime {n} sockets"] = await realtime_latency(base_url, bw, n, events=100 if n <= 10 else 30, rate=20, rng=rng)
            except Exception as exc:  # noqa: BLE001 - report, don't abort the other figures
                extras[f"realtime {n} sockets"] = f"failed: {type(exc).__name__}: {exc}"
    # The floor before Kabar's workloads too, so no backlog of theirs shares its CPU.
    floor_max = None
    if floor_url and "floor" in config.workloads:
        fhost, fport = floor_url.removeprefix("http://").split(":")
        factory = floor_factory(bw, rng)
        log("floor: same server and framework, one indexed lookup, no Kabar code")
        await loadgen.open_loop("floor-warmup", fhost, int(fport), factory, rate=200, duration=config.warmup)
        results.append((await loadgen.open_loop("floor", fhost, int(fport), factory, rate=config.rates["floor"], duration=config.duration, connections=config.connections)).summary())
        floor_max = (await loadgen.closed_loop("floor-max", fhost, int(fport), factory, duration=config.max_duration, connections=64)).summary()
        results.append(floor_max)
    for name in config.workloads:
        if name not in factories:
            continue
        factory = factories[name]()
        rate = config.rates[name]
        log(f"{name}: warm-up, then {rate:.0f}/s for {config.duration:.0f}s")
        await loadgen.open_loop(f"{name}-warmup", host, port_n, factory, rate=min(rate, 200), duration=config.warmup, connections=config.connections)
        result = await loadgen.open_loop(name, host, port_n, factory, rate=rate, duration=config.duration, connections=config.connections)
        results.append(result.summary())
        if name in ("by-phone", "list", "list-filtered", "ingest"):
            log(f"{name}: maximum throughput ({config.max_duration:.0f}s, closed loop)")
            peak = await loadgen.closed_loop(f"{name}-max", host, port_n, factories[name](), duration=config.max_duration, connections=64)
            results.append(peak.summary())
    by_max = next((r for r in results if r["name"] == "by-phone-max"), None)
    if by_max and floor_max and floor_max["achieved_rate"]:
        extras["by-phone max / floor max"] = round(by_max["achieved_rate"] / floor_max["achieved_rate"], 3)
    return results, extras


def run(config: BenchConfig, log: Callable[[str], None], progress_factory: Callable[[int], Callable[[str, int], None]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from kabar.config import load_settings
    from kabar.db.migrate import upgrade
    from kabar.runtime import Runtime

    config.out.mkdir(parents=True, exist_ok=True)
    db_url = os.environ["KABAR_DATABASE_URL"] if config.url else database_url(config)
    env = {
        "KABAR_DATABASE_URL": db_url, "KABAR_LOG_LEVEL": "WARNING", "KABAR_DATA_DIR": str((config.out / "data").resolve()),
        "KABAR_WEBHOOKS_ALLOW_PRIVATE": "1",  # the channel's API base is the local fake provider
        # The send workload measures Kabar, not the per-workspace send limit that protects a number.
        "KABAR_RATE_LIMIT_SEND": os.environ.get("KABAR_RATE_LIMIT_SEND", "1000000/second"),
    }
    log(f"database: {config.db}; migrating")
    upgrade(db_url)
    settings = load_settings({**os.environ, **env})

    async def seed() -> list[BenchWorkspace]:
        from kabar.bench.dataset import seed as seed_data

        runtime = Runtime.build(settings)
        try:
            return await seed_data(
                runtime, workspaces=config.workspaces, contacts=config.scale,
                messages_per_conversation=config.messages_per_conversation, progress=progress_factory(config.scale),
            )
        finally:
            await runtime.db.dispose()

    started = time.perf_counter()
    workspaces = asyncio.run(seed())
    extras: dict[str, Any] = {"seed seconds": round(time.perf_counter() - started, 1)}
    child_prefix = pin_to_cpu(1)
    processes: list[Process] = []
    try:
        base_url = config.url
        if base_url is None:
            port = free_port()
            server = Process(
                [*child_prefix, sys.executable, "-m", "kabar", "serve", "--no-migrate", "--host", "127.0.0.1", "--port", str(port)],
                env, config.out / "server.log",
            )
            processes.append(server)
            base_url = f"http://127.0.0.1:{port}"
            extras["start-up seconds (spawn → /healthz 200)"] = round(server.wait_http(base_url + "/healthz"), 2)
            server.wait_http(base_url + "/readyz")
            extras["idle RSS MB"] = round(server.rss_mb(), 1)
        secret = f"bench-secret-{os.getpid()}-{int(time.time())}"
        api_base_url = "http://127.0.0.1:9"  # nothing listens: only the send workload calls it
        if "send" in config.workloads:
            fake_port = free_port()
            fake = Process(
                [*child_prefix, sys.executable, "-m", "kabar", "fake-provider", "--port", str(fake_port),
                 "--webhook-url", f"{base_url}/webhooks/kapso", "--secret", secret, "--api-key", "bench"],
                env, config.out / "fake-provider.log",
            )
            processes.append(fake)
            fake.wait_http(f"http://127.0.0.1:{fake_port}/_fake/messages", timeout=30)
            api_base_url = f"http://127.0.0.1:{fake_port}/meta/whatsapp/v24.0"
        _configure_channels(base_url, workspaces, secret, api_base_url)
        floor_url = None
        if "floor" in config.workloads:
            fport = free_port()
            floor = Process(
                [*child_prefix, sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--host", "127.0.0.1",
                 "--port", str(fport), "--no-ws", "kabar.bench.floor:create_floor_app"],
                env, config.out / "floor.log",
            )
            processes.append(floor)
            floor_url = f"http://127.0.0.1:{fport}"
            floor.wait_http(f"{floor_url}/floor/{workspaces[0].id}/contact?phone=%2B1")
        results, more = asyncio.run(_drive(config, base_url, floor_url, workspaces, log))
        extras.update(more)
        if processes:
            extras["RSS MB after run"] = round(processes[0].rss_mb(), 1)
        return results, extras
    finally:
        for process in processes:
            process.stop()


def _configure_channels(base_url: str, workspaces: list[BenchWorkspace], secret: str, api_base_url: str) -> None:
    """Connect each bench workspace to a Kapso channel (one secret: one fake provider signs for all)."""
    for index, bw in enumerate(workspaces):
        bw.phone_number_id = f"bench-{index}-{bw.id[-12:]}"
        bw.webhook_secret = secret
        response = httpx.put(
            f"{base_url}/v1/workspaces/{bw.id}/channel",
            json={"provider": "fake", "phone_number_id": bw.phone_number_id, "display_phone_number": f"+6221000{index}",
                  "webhook_secret": bw.webhook_secret, "api_key": "bench", "api_base_url": api_base_url},
            headers={"Authorization": f"Bearer {bw.session_token}"},
            timeout=10,
        )
        if response.status_code not in (200, 201):
            raise RuntimeError(f"could not configure the bench channel: {response.status_code} {response.text}")


def config_summary(config: BenchConfig) -> dict[str, Any]:
    data = asdict(config)
    data["out"] = str(config.out)
    return data
