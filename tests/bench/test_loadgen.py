"""The benchmark's own pieces: percentile maths, open-loop rate control, response validation."""

from __future__ import annotations

import asyncio
import math

import pytest

from kabar.bench import loadgen
from kabar.bench.loadgen import Request


def test_percentile_nearest_rank_on_known_inputs():
    values = list(range(1, 101))  # 1..100
    assert loadgen.percentile(values, 50) == 50
    assert loadgen.percentile(values, 95) == 95
    assert loadgen.percentile(values, 99) == 99
    assert loadgen.percentile(values, 100) == 100
    assert loadgen.percentile([7.0], 99) == 7.0
    assert loadgen.percentile([3, 1, 2], 50) == 2  # unsorted input
    assert math.isnan(loadgen.percentile([], 50))
    with pytest.raises(ValueError):
        loadgen.percentile(values, 0)


class _Server:
    """A tiny HTTP/1.1 keep-alive server on 127.0.0.1; ``delay`` stalls every answer."""

    def __init__(self, body: bytes = b'{"ok":true}', delay: float = 0.0):
        self.body, self.delay, self.count = body, delay, 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                self.count += 1
                if self.delay:
                    await asyncio.sleep(self.delay)  # simulated slow server, not a test wait
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(self.body), self.body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()


async def test_open_loop_offers_the_scheduled_number_of_requests():
    server = _Server()
    async with server as port:
        result = await loadgen.open_loop("t", "127.0.0.1", port, lambda i: Request("GET", "/"), rate=400, duration=1.0, connections=8)
    assert result.sent == 400
    assert result.ok == 400 and result.errors == 0
    assert server.count == 400
    assert 300 <= result.achieved_rate <= 420


async def test_stalled_server_shows_up_as_latency_not_fewer_requests():
    # 2 connections, 20 ms per answer → at most 100/s served while 200/s are offered: the queue
    # grows, and latency measured from the scheduled time must grow far beyond 20 ms.
    server = _Server(delay=0.02)
    async with server as port:
        result = await loadgen.open_loop("t", "127.0.0.1", port, lambda i: Request("GET", "/"), rate=200, duration=0.5, connections=2, timeout=5)
    assert result.sent == 100
    assert result.ok == 100
    assert result.percentile(99) > 200  # the last requests waited ~0.5 s behind the backlog


async def test_wrong_body_is_an_error_not_a_timed_success():
    server = _Server(body=b'{"found":false}')
    validate = lambda status, body: None if b'"found":true' in body else "unexpected body"  # noqa: E731
    async with server as port:
        result = await loadgen.open_loop("t", "127.0.0.1", port, lambda i: Request("GET", "/", validate=validate), rate=100, duration=0.3)
    assert result.ok == 0
    assert result.errors == result.sent == 30
    assert result.error_samples == {"unexpected body": 30}
    assert result.latencies_ms == []


async def test_closed_loop_measures_throughput():
    server = _Server()
    async with server as port:
        result = await loadgen.closed_loop("t", "127.0.0.1", port, lambda i: Request("GET", "/"), duration=0.3, connections=4)
    assert result.ok > 50 and result.errors == 0
    assert result.achieved_rate > 100
