"""Oversize and malformed bodies on every POST/PUT/PATCH route, generated from the app's route table
(routes added later are covered without touching this file).

Each route gets: a body one byte over its own limit (413), malformed JSON, JSON that is not an
object, 100,000-deep nesting, invalid UTF-8, and a non-JSON content type (415 on the API). Never a
5xx; every refusal is problem+json; a route that takes a JSON body answers 400/422 to the bad ones.
"""

from __future__ import annotations

import re
from typing import Any

from litestar.routes import HTTPRoute

from kabar.ids import new_id
from tests.helpers import Tenant

BODY_METHODS = ("POST", "PUT", "PATCH")
BAD_BODIES = {
    "malformed JSON": b'{"name": ',
    "a JSON array": b"[]",
    "a JSON string": b'"x"',
    "JSON null": b"null",
    "a JSON number": b"123",
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "invalid UTF-8": b'{"name": "\xff\xfe\xfd"}',
}


def body_routes(app: Any) -> list[tuple[str, str, bool, int]]:
    """(method, path template, takes a JSON ``data`` body, its body size limit) for every body route."""
    out = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            for method in sorted(set(handler.http_methods) & set(BODY_METHODS)):
                takes_json = "data" in handler.parsed_fn_signature.parameters
                out.append((method, route.path, takes_json, handler.resolve_request_max_body_size() or app.request_max_body_size))
    return out


def concrete(path: str, ws: str) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: ws if m.group(1) == "ws" else new_id(), path)


def over_the_limit(limit: int, *, multipart: bool) -> tuple[bytes, dict[str, str]]:
    """A body of exactly ``limit + 1`` bytes: JSON, or a multipart file upload for upload routes."""
    if not multipart:
        return b'{"x": "' + b"a" * (limit - 8) + b'"}', {"content-type": "application/json"}
    boundary = "kabarboundary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    body = head + b"a" * (limit + 1 - len(head) - len(tail)) + tail
    return body, {"content-type": f"multipart/form-data; boundary={boundary}"}


def assert_refusal(response: Any, allowed: set[int], what: str) -> None:
    assert response.status_code < 500, f"{what}: {response.status_code} {response.text[:300]}"
    if allowed:
        assert response.status_code in allowed, f"{what}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json"), f"{what}: {response.headers['content-type']}"


async def test_every_body_route_refuses_bad_bodies_cleanly(client: Any, tenant: Tenant) -> None:
    routes = body_routes(client.app)
    assert len(routes) >= 30, routes
    checked = 0
    for method, template, takes_json, limit in routes:
        path = concrete(template, tenant.ws)
        # Logging out would end the session the other requests use: that one goes anonymous.
        auth = {} if template == "/v1/auth/logout" else tenant.owner.headers
        headers = {**auth, "content-type": "application/json"}
        is_webhook = path.startswith("/webhooks/")  # unsigned: 401 (or 400 for a body it cannot even route)
        # Routes that never read a body (mark read, rotate a secret...) may ignore it; the others
        # (a JSON ``data`` parameter, or their own body limit: uploads, imports, webhooks) refuse it.
        reads_body = takes_json or is_webhook or limit != client.app.request_max_body_size
        for name, body in BAD_BODIES.items():
            response = await client.request(method, path, content=body, headers=headers)
            expected = {400, 401} if is_webhook else ({400, 413, 422} if takes_json else set())
            assert_refusal(response, expected, f"{method} {template} with {name}")
            checked += 1
        oversize, oversize_headers = over_the_limit(limit, multipart=reads_body and not takes_json and not is_webhook)
        assert len(oversize) == limit + 1
        response = await client.request(method, path, content=oversize, headers={**auth, **oversize_headers})
        assert_refusal(response, {413} if reads_body else set(), f"{method} {template} with {limit + 1} bytes")
        if path.startswith("/v1/"):
            response = await client.request(method, path, content=b"name=x", headers={**auth, "content-type": "text/plain"})
            assert_refusal(response, {415}, f"{method} {template} as text/plain")
            checked += 1
        checked += 1
    print(f"\nBODIES: {len(routes)} routes, {checked} bad requests, 0 server errors")
