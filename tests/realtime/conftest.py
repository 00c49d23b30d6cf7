"""Fixtures for realtime tests: a ``kabar serve`` process per backend (module scope), an HTTP
client to it, and a private Redis server when a test needs one it may stop."""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess, create_database, free_port, server_env
from tests.realtime.support import Site

JWT_SECRET = "realtime-test-jwt-secret-long-enough-123"


@pytest.fixture(scope="module")
def site_database(backend: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    tmp = tmp_path_factory.mktemp(f"rt-{backend}")
    return create_database(backend, tmp, f"rt_{secrets.token_hex(3)}"), tmp


@pytest.fixture(scope="module")
async def site(site_database: tuple[str, Path]) -> AsyncIterator[Site]:
    result = Site(*site_database)
    yield result
    await result.db.dispose()


@pytest.fixture(scope="module")
def server(site: Site) -> Iterator[ServerProcess]:
    """One server for the module, on the module's database (both backends)."""
    env = server_env(site.database_url, site.tmp, KABAR_JWT_SECRET=JWT_SECRET, KABAR_JWT_AUDIENCE="authenticated")
    proc = ServerProcess(env, free_port(), site.tmp / f"server-{secrets.token_hex(2)}.log")
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def http(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


class RedisServer:
    """A private ``redis-server`` (never the machine's shared one), stopped and started by PID."""

    def __init__(self, tmp: Path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.tmp = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is required for the realtime tests"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.tmp)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()
