"""A real HTTP receiver for outgoing webhooks, on 127.0.0.1, recording every request it gets."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def delivery_id(self) -> str:
        return self.headers["x-kabar-delivery"]

    def signature_ok(self, secret: str) -> bool:
        """What a receiver does: recompute the HMAC over ``<timestamp>.<raw body>``."""
        expected = hmac.new(secret.encode(), self.headers["x-kabar-timestamp"].encode() + b"." + self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.headers["x-kabar-signature"])


@dataclass
class Receiver:
    """Answers ``status`` (change it to make the receiver fail or recover).

    While ``hold`` is set to an unset event, a request is recorded but not answered until the event
    is set: the sender is caught between its POST and the answer.
    """

    status: int = 200
    hold: threading.Event | None = None
    requests: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    status = receiver.status
                    receiver.requests.append(Received({k.lower(): v for k, v in self.headers.items()}, body, status))
                    hold = receiver.hold
                if hold is not None:
                    hold.wait(timeout=30)
                payload = b"ok" if status < 300 else b"receiver says no"
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.requests)

    def accepted(self) -> list[Received]:
        return [r for r in self.snapshot() if 200 <= r.status < 300]

    def refused(self) -> list[Received]:
        return [r for r in self.snapshot() if r.status >= 300]
