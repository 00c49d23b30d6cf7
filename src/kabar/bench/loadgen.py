"""An open-loop HTTP load generator: requests leave on a fixed schedule, whatever the server does.

Latency is measured from each request's *scheduled* send time, not from when a connection got
around to sending it, so a server that stalls shows up as latency instead of as fewer requests
(no coordinated omission). Every response is validated; a wrong status or body is an error and is
never timed as a success.

It speaks plain HTTP/1.1 over asyncio streams (keep-alive, one request in flight per connection):
far cheaper per request than an HTTP client library, so one core can offer several thousand
requests per second.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# validate(status, body) -> None when the response is right, else a short reason.
Validator = Callable[[int, bytes], str | None]


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    validate: Validator | None = None

    def encode(self, host: str) -> bytes:
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: {host}", "Connection: keep-alive"]
        lines += [f"{k}: {v}" for k, v in self.headers]
        if self.body or self.method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


RequestFactory = Callable[[int], Request]


@dataclass
class RunResult:
    name: str
    offered_rate: float | None  # None for closed-loop maximum-throughput runs
    duration_s: float
    sent: int = 0
    ok: int = 0
    errors: int = 0
    error_samples: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def achieved_rate(self) -> float:
        return self.ok / self.duration_s if self.duration_s > 0 else 0.0

    def percentile(self, p: float) -> float:
        return percentile(self.latencies_ms, p)

    def summary(self) -> dict[str, float | int | str | None | dict[str, int]]:
        return {
            "name": self.name,
            "offered_rate": self.offered_rate,
            "achieved_rate": round(self.achieved_rate, 1),
            "sent": self.sent,
            "ok": self.ok,
            "errors": self.errors,
            "error_samples": dict(list(self.error_samples.items())[:5]),
            "p50_ms": round(self.percentile(50), 3),
            "p95_ms": round(self.percentile(95), 3),
            "p99_ms": round(self.percentile(99), 3),
            "max_ms": round(max(self.latencies_ms), 3) if self.latencies_ms else math.nan,
        }

    def record_error(self, reason: str) -> None:
        self.errors += 1
        self.error_samples[reason] = self.error_samples.get(reason, 0) + 1


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (the smallest value with at least p % of values at or below it)."""
    if not values:
        return math.nan
    if not 0 < p <= 100:
        raise ValueError("percentile must be in (0, 100]")
    ordered = sorted(values)
    rank = math.ceil(p / 100 * len(ordered))
    return ordered[max(0, rank - 1)]


class HttpConnection:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except (ConnectionError, OSError):
                pass
        self.reader = self.writer = None

    async def roundtrip(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers = {}
        for line in header_lines:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                chunks.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            body = b"".join(chunks)
        else:
            body = b""
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, body


async def _do(conn: HttpConnection, host_header: str, request: Request, timeout: float) -> str | None:
    try:
        status, body = await asyncio.wait_for(conn.roundtrip(request.encode(host_header)), timeout)
    except TimeoutError:
        await conn.close()
        return "timeout"
    except (ConnectionError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
        await conn.close()
        return f"connection: {type(exc).__name__}"
    if request.validate is not None:
        return request.validate(status, body)
    return None if 200 <= status < 300 else f"status {status}"


async def open_loop(
    name: str,
    host: str,
    port: int,
    factory: RequestFactory,
    *,
    rate: float,
    duration: float,
    connections: int = 32,
    timeout: float = 5.0,
) -> RunResult:
    """Offer ``rate`` requests/s for ``duration`` s; latency counts from each scheduled time."""
    total = int(rate * duration)
    result = RunResult(name, rate, duration)
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    host_header = f"{host}:{port}"
    conns = [HttpConnection(host, port) for _ in range(connections)]

    async def worker(conn: HttpConnection) -> None:
        while True:
            item = await queue.get()
            if item is None:
                return
            index, scheduled = item
            error = await _do(conn, host_header, factory(index), timeout)
            if error is None:
                result.ok += 1
                result.latencies_ms.append((time.perf_counter() - scheduled) * 1000)
            else:
                result.record_error(error)

    workers = [asyncio.create_task(worker(c)) for c in conns]
    start = time.perf_counter() + 0.05
    for index in range(total):
        scheduled = start + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((index, scheduled))
        result.sent += 1
    for _ in workers:
        queue.put_nowait(None)
    # Requests still queued or in flight get the timeout to finish, then count as errors.
    done, pending = await asyncio.wait(workers, timeout=timeout + duration * 0.5 + 1)
    for task in pending:
        task.cancel()
    missing = result.sent - result.ok - result.errors
    for _ in range(missing):
        result.record_error("unfinished")
    for conn in conns:
        await conn.close()
    return result


async def closed_loop(
    name: str,
    host: str,
    port: int,
    factory: RequestFactory,
    *,
    duration: float,
    connections: int = 64,
    timeout: float = 5.0,
) -> RunResult:
    """As fast as the server answers with ``connections`` in flight: the maximum throughput."""
    result = RunResult(name, None, duration)
    host_header = f"{host}:{port}"
    deadline = time.perf_counter() + duration
    counter = iter(range(10**12))

    async def worker() -> None:
        conn = HttpConnection(host, port)
        while time.perf_counter() < deadline:
            request = factory(next(counter))
            started = time.perf_counter()
            result.sent += 1
            error = await _do(conn, host_header, request, timeout)
            if error is None:
                result.ok += 1
                result.latencies_ms.append((time.perf_counter() - started) * 1000)
            else:
                result.record_error(error)
        await conn.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    result.duration_s = time.perf_counter() - began
    return result
