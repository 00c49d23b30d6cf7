"""One outgoing-webhook POST: the address policy, the body, the signature, the attempt's outcome.

No database here; ``kabar.integrations.dispatch`` decides what to send and records what happened.

Address policy: unless ``KABAR_WEBHOOKS_ALLOW_PRIVATE=1``, a URL may only reach public (global
unicast) addresses. The check runs when the URL is saved and again before every POST; at delivery
the request is sent to the very address that was checked (the URL's host goes in ``Host`` and in
TLS SNI), so a DNS answer that changes between check and connect (DNS rebinding) cannot redirect
the POST to an internal service. Redirects are not followed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import socket
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from kabar import __version__

SIGNATURE_HEADER = "X-Kabar-Signature"
TIMESTAMP_HEADER = "X-Kabar-Timestamp"
EVENT_HEADER = "X-Kabar-Event"
DELIVERY_HEADER = "X-Kabar-Delivery"
USER_AGENT = f"Kabar-Webhooks/{__version__}"
RESOLVE_TIMEOUT = 5.0
ERROR_SNIPPET = 300  # characters of a failing response's body kept as its error
READ_LIMIT = 64 * 1024  # a receiver's answer is read this far at most, then dropped


class UrlRefused(ValueError):
    """The URL is malformed, or reaches an address the policy refuses; the message says why."""


# -- URLs and addresses -------------------------------------------------------------------------


def parse_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL with a host, or UrlRefused."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"is not a valid URL ({exc})") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UrlRefused("must start with http:// or https://")
    host = parts.hostname
    if not host:
        raise UrlRefused("must name a host")
    if any(ch.isspace() for ch in url):
        raise UrlRefused("must not contain spaces")
    return scheme, host, port or (443 if scheme == "https" else 80)


def address_allowed(address: str) -> bool:
    """Public unicast only: no loopback, private, link-local, shared (CGNAT), multicast or reserved."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to (tests replace this to play DNS)."""
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT)
    return list(dict.fromkeys(info[4][0] for info in infos))


def _ip_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


async def checked_addresses(url: str) -> list[str]:
    """The addresses ``url`` reaches, all of them allowed by the policy; UrlRefused otherwise."""
    _, host, port = parse_url(url)
    literal = _ip_literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        if host.lower() == "localhost" or host.lower().endswith(".localhost"):
            raise UrlRefused("must not point at this machine (localhost)")
        try:
            addresses = await resolve(host, port)
        except (OSError, TimeoutError) as exc:
            raise UrlRefused(f"host {host!r} does not resolve") from exc
        if not addresses:
            raise UrlRefused(f"host {host!r} does not resolve")
    refused = [a for a in addresses if not address_allowed(a)]
    if refused:
        raise UrlRefused(
            f"resolves to a loopback, private, link-local or reserved address ({refused[0]}); "
            "set KABAR_WEBHOOKS_ALLOW_PRIVATE=1 to allow internal receivers"
        )
    return addresses


async def validate_url(url: str, *, allow_private: bool) -> None:
    """Check a URL before it is saved (UrlRefused says what is wrong)."""
    parse_url(url)
    if not allow_private:
        await checked_addresses(url)


@dataclass(frozen=True, slots=True)
class Target:
    """Where one POST goes: the URL to connect to, plus the Host/SNI of the original URL."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, Any] = field(default_factory=dict)


async def target_for(url: str, *, allow_private: bool) -> Target:
    if allow_private:
        parse_url(url)
        return Target(url)
    address = (await checked_addresses(url))[0]
    original = httpx.URL(url)
    host = original.host
    pinned = original.copy_with(host=address)
    netloc = original.netloc.decode("ascii").rsplit("@", 1)[-1]
    return Target(str(pinned), {"Host": netloc}, {"sni_hostname": host} if original.scheme == "https" else {})


# -- body and signature -------------------------------------------------------------------------


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``<timestamp>.<raw body>``, keyed with the endpoint secret's UTF-8 bytes."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def signed_headers(secret: str, *, event_type: str, delivery_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    timestamp = str(int(now if now is not None else time.time()))
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: event_type,
        DELIVERY_HEADER: delivery_id,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }


# -- one attempt --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attempt:
    ok: bool
    status_code: int | None
    duration_ms: int
    error: str | None


def new_client() -> httpx.AsyncClient:
    # trust_env=False: no proxy from the environment may carry a POST around the address policy.
    return httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=httpx.Timeout(30.0))


async def post(
    http: httpx.AsyncClient,
    url: str,
    *,
    secret: str,
    event_type: str,
    delivery_id: str,
    body: bytes,
    timeout: float,
    allow_private: bool,
) -> Attempt:
    """POST ``body`` signed; success is a 2xx answer within ``timeout`` seconds (all included)."""
    started = time.perf_counter()

    def took() -> int:
        return int((time.perf_counter() - started) * 1000)

    try:
        async with asyncio.timeout(timeout):
            target = await target_for(url, allow_private=allow_private)
            headers = {**signed_headers(secret, event_type=event_type, delivery_id=delivery_id, body=body), **target.headers}
            async with http.stream("POST", target.url, content=body, headers=headers, extensions=target.extensions) as response:
                answer = bytearray()
                async for chunk in response.aiter_bytes():
                    answer += chunk
                    if len(answer) >= READ_LIMIT:
                        break
                status = response.status_code
    except TimeoutError:
        return Attempt(False, None, took(), f"no answer within {timeout:g} s")
    except UrlRefused as exc:
        return Attempt(False, None, took(), f"refused: URL {exc}")
    except httpx.HTTPError as exc:
        return Attempt(False, None, took(), f"{type(exc).__name__}: {exc}"[:ERROR_SNIPPET] or type(exc).__name__)
    if 200 <= status < 300:
        return Attempt(True, status, took(), None)
    text = bytes(answer[:ERROR_SNIPPET]).decode("utf-8", "replace").strip()
    return Attempt(False, status, took(), f"HTTP {status}" + (f": {text}" if text else ""))
