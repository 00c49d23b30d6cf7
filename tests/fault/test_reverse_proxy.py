"""``docs/nginx.conf`` in front of two ``kabar serve`` processes (PostgreSQL, a private Redis).

The test runs the documented file itself (only the upstream addresses and the listen address are
rewritten to free ports) and checks through it: API calls reach both processes, a 10 MB upload
passes, a WebSocket subscription receives an event written through the proxy, and an SSE stream
delivers an event as it happens (unbuffered). nginx is required: without it the test fails, so
``.ci/run`` installs it.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import create_database, free_port, server_env
from tests.realtime.support import Site, Sock, patch_workspace

CONF = Path(__file__).resolve().parents[2] / "docs" / "nginx.conf"


class Nginx:
    """nginx with the documented site config, on a free port, stopped by PID."""

    def __init__(self, tmp: Path, upstreams: list[int]):
        binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
        assert binary, "nginx is required for the reverse-proxy test (apt-get install nginx; .ci/run installs it)"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        site = CONF.read_text()
        servers = re.findall(r"^\s*server 127\.0\.0\.1:\d+.*$", site, flags=re.M)
        assert len(servers) == len(upstreams), servers
        for line, port in zip(servers, upstreams, strict=True):
            site = site.replace(line, re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{port}", line), 1)
        site, n = re.subn(r"^(\s*)listen 80;", rf"\1listen 127.0.0.1:{self.port};", site, flags=re.M)
        assert n == 1
        (tmp / "kabar-site.conf").write_text(site)
        for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (tmp / name).mkdir(exist_ok=True)
        user = "user root root;\n" if os.geteuid() == 0 else ""  # workers must reach the test's private tmp dir
        (tmp / "nginx.conf").write_text(
            f"{user}worker_processes 1;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log warn;\n"
            "events { worker_connections 1024; }\n"
            f"http {{\n  access_log {tmp}/access.log;\n  client_body_temp_path {tmp}/body;\n  proxy_temp_path {tmp}/proxy;\n"
            f"  fastcgi_temp_path {tmp}/fastcgi;\n  uwsgi_temp_path {tmp}/uwsgi;\n  scgi_temp_path {tmp}/scgi;\n"
            f"  include {tmp}/kabar-site.conf;\n}}\n"
        )
        self.error_log = tmp / "error.log"
        check = subprocess.run([binary, "-t", "-p", str(tmp), "-c", str(tmp / "nginx.conf")], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        self.proc = subprocess.Popen([binary, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            assert self.proc.poll() is None, self.error_log.read_text() if self.error_log.exists() else "nginx exited"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def proxy_factory(tmp_path: Path) -> Iterator[list[Nginx]]:
    started: list[Nginx] = []
    yield started
    for nginx in started:
        nginx.stop()


async def test_documented_nginx_config_serves_api_uploads_websocket_and_sse(tmp_path, start_server, private_redis, proxy_factory):
    url = await asyncio.to_thread(create_database, "postgres", tmp_path, f"proxy_{secrets.token_hex(2)}")
    env = server_env(url, tmp_path, KABAR_REDIS_URL=private_redis.url, KABAR_TRUSTED_PROXIES="127.0.0.1")
    a, b = await asyncio.gather(asyncio.to_thread(start_server, env), asyncio.to_thread(start_server, env))
    (tmp_path / "nginx").mkdir()
    nginx = await asyncio.to_thread(Nginx, tmp_path / "nginx", [a.port, b.port])
    proxy_factory.append(nginx)
    site = Site(url, tmp_path)
    try:
        async with httpx.AsyncClient(base_url=nginx.url, timeout=20) as http:
            ws, owner = await site.workspace(http)
            for _ in range(10):
                response = await http.get(f"/v1/workspaces/{ws}", headers=owner.headers)
                assert response.status_code == 200, response.text
                assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"]), "nginx's $request_id reaches Kabar"

            big = secrets.token_bytes(10 * 1024 * 1024)
            upload = await http.post(f"/v1/workspaces/{ws}/uploads", files={"file": ("katalog.pdf", big, "application/pdf")}, headers=owner.headers)
            assert upload.status_code == 201, upload.text[:300]

            sock = await Sock.open(nginx.url, ws, owner.token, since=None)
            try:
                start = sock.ops("subscribed")[0]["since"]
                await patch_workspace(http, ws, owner, 1)
                await sock.wait_seq(start + 1, timeout=10)
            finally:
                await sock.close()

            async with http.stream("GET", f"/v1/workspaces/{ws}/events/stream", headers=owner.headers) as stream:
                lines = stream.aiter_lines()
                async for line in lines:
                    if line.startswith("event: subscribed"):
                        break
                written = time.perf_counter()
                await patch_workspace(http, ws, owner, 2)
                async with asyncio.timeout(10):
                    async for line in lines:
                        if line.startswith("data:") and '"workspace.updated"' in line:
                            break
                sse_latency = time.perf_counter() - written
            assert sse_latency < 3, f"SSE event took {sse_latency:.2f}s through nginx (buffered?)"

        # Both processes served part of the traffic.
        for server in (a, b):
            metrics = httpx.get(server.url + "/metrics", timeout=10).text
            served = sum(float(v) for v in re.findall(r'kabar_http_requests_total\{[^}]*route="/v1/workspaces/\{ws\}"[^}]*\} (\S+)', metrics))
            assert served >= 1, f"{server.url} served no API request through nginx"
    finally:
        await site.db.dispose()
    print(f"\nNGINX: API, 10 MB upload, WebSocket and SSE through docs/nginx.conf; SSE event after {sse_latency * 1000:.0f} ms")
