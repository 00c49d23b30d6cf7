"""A real HTTP server on 127.0.0.1 for the egress tests: serves a secret, redirects, answers as
a provider API, or hangs; records every request with its headers."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECRET = b"TOP-SECRET internal admin page: db password hunter2"


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # accept the request, never answer (until the server stops)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


class Server:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {"/secret": Route(body=SECRET, headers={"content-type": "image/jpeg"})}
        self.seen: list[Seen] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                path = self.path.split("?", 1)[0]
                with server._lock:
                    server.seen.append(Seen(self.command, path, {k.lower(): v for k, v in self.headers.items()}))
                route = server.routes.get(path) or next((r for p, r in server.routes.items() if p.endswith("*") and path.startswith(p[:-1])), None)
                if route is None:
                    route = Route(404, b"not here")
                if route.hang:
                    server._stop.wait(30)
                    return
                self.send_response(route.status)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                self.wfile.write(route.body)

            do_GET = do_POST = _answer  # noqa: N815 - http.server's naming

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="egress-test-server", daemon=True).start()

    def url(self, path: str = "", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        self.routes[path] = Route(status, b"", {"location": location})

    def json(self, path: str, doc: Any) -> None:
        self.routes[path] = Route(200, json.dumps(doc).encode(), {"content-type": "application/json"})

    def requests(self, path: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if path is None or s.path == path]

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
