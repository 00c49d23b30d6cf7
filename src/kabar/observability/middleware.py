"""One ASGI middleware for what every HTTP response needs: request id, security headers,
content-type policy, and timing (Server-Timing header, Prometheus histograms, debug log line).

Plain ASGI rather than Litestar's middleware classes: it runs on every request, including the
hot paths, and costs only a few dict operations.
"""

from __future__ import annotations

import logging
import secrets
import time
from contextvars import ContextVar

import msgspec

from kabar.db.engine import query_stats
from kabar.observability import metrics

log = logging.getLogger("kabar.request")
request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
workspace_id_var: ContextVar[str] = ContextVar("workspace_id", default="-")

# Every HTML page: scripts and styles only from this origin, no inline code (the web pages set
# it themselves; any other HTML, such as the API reference at /schema, gets it here).
CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        # Media previews may point at the provider's CDN; blob: is the composer's local preview.
        "img-src 'self' data: blob: https:",
        "media-src 'self' blob: https:",
        "connect-src 'self' ws: wss:",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
_CSP_HEADER = (b"content-security-policy", CSP.encode())

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
# JSON API bodies must be JSON (or multipart for uploads and imports).
_JSON_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_ACCEPTED_TYPES = (b"application/json", b"multipart/form-data", b"application/x-www-form-urlencoded")


def _problem(status: int, slug: str, title: str, detail: str) -> bytes:
    return msgspec.json.encode({"type": f"https://kabar.dev/problems/{slug}", "title": title, "status": status, "detail": detail})



class KabarMiddleware:
    def __init__(self, app):  # noqa: ANN001
        self.app = app

    async def __call__(self, scope, receive, send):  # noqa: ANN001
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or secrets.token_hex(16)
        request_id_var.set(request_id)
        workspace_id_var.set("-")  # set once the caller's workspace is resolved (kabar.http)
        path: str = scope["path"]
        method: str = scope["method"]
        if b"%00" in scope["query_string"]:  # PostgreSQL cannot store or compare NUL: refuse it alike everywhere
            await _send_problem(send, 400, "bad-request", "Malformed request", "Query parameters may not contain NUL characters", request_id)
            return
        if method in _JSON_BODY_METHODS and path.startswith("/v1/"):
            content_type = headers.get(b"content-type", b"").lower()  # media types are case-insensitive
            has_body = headers.get(b"content-length", b"0") not in (b"0", b"") or b"transfer-encoding" in headers
            if has_body and not content_type.startswith(_ACCEPTED_TYPES):
                await _send_problem(send, 415, "unsupported-media-type", "Unsupported media type", "Send JSON (Content-Type: application/json)", request_id)
                return
        stats: list[float] = []
        query_stats.set(stats)
        started = time.perf_counter()
        status_holder = [500]

        async def send_wrapper(message):  # noqa: ANN001
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                elapsed = (time.perf_counter() - started) * 1000
                db_ms = sum(stats) * 1000
                extra = [
                    (b"x-request-id", request_id.encode()),
                    (b"server-timing", f"db;dur={db_ms:.2f};desc=\"{len(stats)} queries\", app;dur={elapsed:.2f}".encode()),
                ]
                headers = list(message.get("headers", []))
                if _is_html(headers) and not any(name.lower() == b"content-security-policy" for name, _ in headers):
                    headers.append(_CSP_HEADER)
                message["headers"] = headers + SECURITY_HEADERS + extra
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed_s = time.perf_counter() - started
            # Bounded labels: route templates and status codes are finite sets (unmatched paths
            # share one "unmatched" label).
            route = scope.get("path_template") or "unmatched"
            metrics.HTTP.record(method, route, status_holder[0], elapsed_s, len(stats), sum(stats))
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "%s %s %s %.2fms db=%d/%.2fms",
                    method, path, status_holder[0], elapsed_s * 1000, len(stats), sum(stats) * 1000,
                )


def _is_html(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name.lower() == b"content-type" and value.lower().startswith(b"text/html") for name, value in headers)


async def _send_problem(send, status: int, slug: str, title: str, detail: str, request_id: str) -> None:  # noqa: ANN001
    body = _problem(status, slug, title, detail)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", request_id.encode()),
                *SECURITY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
