"""A lean WebSocket load client for measurements (not for tests): many sockets spread over a few
worker processes pinned to chosen CPUs, so the client is not what is being measured.

Each worker runs one event loop (uvloop when installed) with raw asyncio protocols and the few
lines of RFC 6455 a receiver needs (client frames masked, server frames read, pings answered).
For every socket it records when each event's frame arrived, as ``time.monotonic()``, which is
``CLOCK_MONOTONIC``: one clock for every process on the machine, so arrival times compare
directly with the writer's "200 received" time and with the server's own trace.

    pool = ClientPool(processes=4, cpus={1})
    await pool.open("127.0.0.1", 8000, "/v1/workspaces/W/realtime?token=T", 1000, subscribe=True)
    ...write, then: await pool.wait_seq(seq, timeout=30); times = await pool.arrivals(seq)
    await pool.close()
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import multiprocessing as mp
import os
import re
import struct
import time
from collections import defaultdict
from typing import Any

_SEQ = re.compile(rb'\{"op":"event","seq":(\d+)')
_SUBSCRIBE = b'{"op":"subscribe","since":null}'


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (the mask is required; its value does not matter to the server)."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
    return head + mask + masked


class RawSocket(asyncio.Protocol):
    def __init__(self, worker: Worker, request: bytes, subscribe: bool):
        self.worker = worker
        self.request = request
        self.subscribe = subscribe
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.upgraded = False
        self.opened: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.subscribed = False
        self.closed = False
        self.max_seq = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.opened.done():
            self.opened.set_result(False)
        self.worker.socks.discard(self)

    def data_received(self, data: bytes) -> None:
        at = time.monotonic()
        buf = self.buffer + data if self.buffer else data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buf
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.opened.set_result(False)
                self.transport.close()
                return
            self.upgraded = True
            buf = buf[end + 4 :]
            if self.subscribe:
                self.transport.write(_client_frame(0x1, _SUBSCRIBE))
            else:
                self.opened.set_result(True)
        pos, n = 0, len(buf)
        while n - pos >= 2:
            opcode, length = buf[pos] & 0x0F, buf[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if n - start < 2:
                    break
                (length,) = struct.unpack_from("!H", buf, start)
                start += 2
            elif length == 127:
                if n - start < 8:
                    break
                (length,) = struct.unpack_from("!Q", buf, start)
                start += 8
            if n - start < length:
                break
            payload = buf[start : start + length]
            pos = start + length
            if opcode == 0x1:
                self.on_text(payload, at)
            elif opcode == 0x9:
                self.transport.write(_client_frame(0xA, payload))
            elif opcode == 0x8:
                self.closed = True
                self.transport.close()
                break
        self.buffer = buf[pos:]

    def on_text(self, payload: bytes, at: float) -> None:
        match = _SEQ.match(payload)
        if match is not None:
            seq = int(match.group(1))
            self.max_seq = max(self.max_seq, seq)
            self.worker.arrived(seq, at)
        elif not self.subscribed and payload.startswith(b'{"op":"subscribed"'):
            self.subscribed = True
            self.worker.last_subscribed = payload
            if not self.opened.done():
                self.opened.set_result(True)


class Worker:
    """One client process: its sockets and what they received."""

    def __init__(self) -> None:
        self.socks: set[RawSocket] = set()
        self.arrivals: dict[int, list[float]] = defaultdict(list)
        self.last_subscribed = b""

    def arrived(self, seq: int, at: float) -> None:
        self.arrivals[seq].append(at)

    async def open(self, host: str, port: int, path: str, n: int, subscribe: bool, concurrency: int) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        gate = asyncio.Semaphore(concurrency)
        failed = 0

        async def one() -> None:
            nonlocal failed
            async with gate:
                try:
                    _, proto = await loop.create_connection(lambda: RawSocket(self, request, subscribe), host, port)
                    ok = await asyncio.wait_for(proto.opened, 60)
                except (OSError, TimeoutError):
                    ok = False
                if ok:
                    self.socks.add(proto)
                else:
                    failed += 1

        started = time.monotonic()
        await asyncio.gather(*(one() for _ in range(n)))
        return {"open": len(self.socks), "failed": failed, "seconds": time.monotonic() - started, "subscribed": self.last_subscribed.decode()}

    async def wait_seq(self, seq: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while len(self.arrivals.get(seq, ())) < len(self.socks) and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        return len(self.arrivals.get(seq, ()))

    async def close(self) -> None:
        for sock in list(self.socks):
            if sock.transport is not None and not sock.closed:
                sock.transport.write(_client_frame(0x8, struct.pack("!H", 1000)))
                sock.transport.close()
        self.socks.clear()
        await asyncio.sleep(0.1)


def pin(cpus: set[int] | None, fifo_priority: int = 0) -> None:
    """Pin this process to ``cpus``; with ``fifo_priority`` also run it SCHED_FIFO (root only), so
    other work on a shared machine cannot preempt it (the run then models a dedicated machine)."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    if fifo_priority:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(fifo_priority))


def _worker_main(conn: Any, cpus: set[int] | None, fifo_priority: int) -> None:
    pin(cpus, fifo_priority)
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    async def main() -> None:
        worker = Worker()
        loop = asyncio.get_running_loop()
        commands: asyncio.Queue[Any] = asyncio.Queue()
        loop.add_reader(conn.fileno(), lambda: commands.put_nowait(conn.recv()))
        while True:
            command, *args = await commands.get()
            if command == "open":
                conn.send(await worker.open(*args))
            elif command == "wait":
                conn.send(await worker.wait_seq(*args))
            elif command == "arrivals":
                conn.send({seq: worker.arrivals.get(seq, []) for seq in args[0]})
            elif command == "count":
                conn.send(len(worker.socks))
            elif command == "status":
                highest = [sock.max_seq for sock in worker.socks]
                conn.send((min(highest), max(highest)) if highest else None)
            elif command == "clear":
                worker.arrivals.clear()
                conn.send(True)
            elif command == "close":
                await worker.close()
                conn.send(True)
            elif command == "exit":
                conn.send(True)
                return

    asyncio.run(main())


class ClientPool:
    """``processes`` client workers (spawned, pinned to ``cpus``) that share the sockets."""

    def __init__(self, processes: int = 4, cpus: set[int] | None = None, fifo_priority: int = 0):
        ctx = mp.get_context("spawn")
        self.conns = []
        self.procs = []
        for _ in range(processes):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_main, args=(child, cpus, fifo_priority), daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)

    async def _all(self, *command: Any, shares: list[Any] | None = None) -> list[Any]:
        def ask(i: int, conn: Any) -> Any:
            conn.send((command[0], *(shares[i] if shares else ()), *command[1:]))
            return conn.recv()

        return await asyncio.gather(*(asyncio.to_thread(ask, i, conn) for i, conn in enumerate(self.conns)))

    async def open(self, host: str, port: int, path: str, n: int, *, subscribe: bool = True, concurrency: int = 50) -> dict[str, Any]:
        k = len(self.conns)
        counts = [n // k + (1 if i < n % k else 0) for i in range(k)]
        started = time.monotonic()
        results = await self._all("open", shares=[(host, port, path, c, subscribe, concurrency) for c in counts])
        return {
            "open": sum(r["open"] for r in results),
            "failed": sum(r["failed"] for r in results),
            "seconds": time.monotonic() - started,
            "subscribed": next((r["subscribed"] for r in results if r["subscribed"]), ""),
        }

    async def wait_seq(self, seq: int, timeout: float = 30.0) -> int:
        return sum(await self._all("wait", seq, timeout))

    async def status(self) -> tuple[int, int]:
        """(lowest, highest) last event seq received over all sockets."""
        parts = [p for p in await self._all("status") if p is not None]
        return min((p[0] for p in parts), default=0), max((p[1] for p in parts), default=0)

    async def settled(self, after: int, timeout: float = 30.0) -> int:
        """Wait until every socket got the same last seq above ``after`` (one write's events,
        however many it emitted, have all arrived) and return that seq."""
        deadline = time.monotonic() + timeout
        previous = (-1, -1)
        while time.monotonic() < deadline:
            status = await self.status()
            if status[0] == status[1] > after and status == previous:
                return status[0]
            previous = status
            await asyncio.sleep(0.03)
        raise TimeoutError(f"sockets did not settle after seq {after}: {previous}")

    async def arrivals(self, seqs: list[int]) -> dict[int, list[float]]:
        merged: dict[int, list[float]] = defaultdict(list)
        for part in await self._all("arrivals", seqs):
            for seq, times in part.items():
                merged[seq] += times
        return merged

    async def clear(self) -> None:
        await self._all("clear")

    async def count(self) -> int:
        return sum(await self._all("count"))

    async def close(self) -> None:
        await self._all("close")

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self._all("exit")
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
