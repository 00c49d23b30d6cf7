"""The egress guard: every URL Kabar fetches or posts to goes through here.

Inbound media URLs from webhooks, a channel's ``api_base_url``, ARI's LLM ``base_url``, outgoing
webhooks and the identity provider's JWKS all use ``client()`` (an ``httpx.AsyncClient`` whose
transport enforces the rules on every request) and are checked with ``validate_url()`` when saved.
The checks at save time and at use time are the same two functions: ``check_url`` (the URL) and
``checked_addresses`` (what its host resolves to).

The rules, unless ``allow_private`` (``KABAR_WEBHOOKS_ALLOW_PRIVATE=1``, or the demo):
- http(s) only, a host, no user name or password in the URL, no spaces, controls or backslashes;
- the host is read the way the OS resolver reads it (``inet_aton``: ``2130706433``, ``0x7f000001``,
  ``127.1`` and ``0`` are IPv4 addresses) and ``localhost`` names (trailing dots included) are refused;
- every address the host resolves to must be a global unicast address: no loopback, private, link
  local, CGNAT, multicast, reserved or documentation range, and no IPv6 address that embeds a
  refused IPv4 one (IPv4-mapped/-compatible/-translated, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``);
- the connection goes to the very address that was checked: the name is resolved once, inside the
  connect step of the transport, and the socket is opened to that address, while the ``Host``
  header and TLS (SNI and certificate verification) keep using the name. A DNS answer that changes
  between check and connect (DNS rebinding) therefore cannot reach an internal service;
- redirects are never followed by the client; ``stream_get`` follows a bounded number by hand, each
  hop checked again, and sends credentials only to hosts the caller trusts, never across origins.

With ``allow_private`` the address rules are off; the URL rules stay.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import typing
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpcore
import httpx

RESOLVE_TIMEOUT = 5.0
MAX_REDIRECTS = 5
ALLOW_PRIVATE_HINT = "set KABAR_WEBHOOKS_ALLOW_PRIVATE=1 to allow internal addresses"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class EgressRefused(httpx.RequestError):
    """The URL is malformed or reaches an address the guard refuses; the message says why.

    An ``httpx.RequestError``: code that handles "the request could not be made" handles this too.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)


def private_allowed(settings: Any) -> bool:
    """The one switch: ``KABAR_WEBHOOKS_ALLOW_PRIVATE=1`` (local testing) or the demo, whose fake
    provider runs on 127.0.0.1."""
    return bool(settings.webhooks_allow_private or settings.demo)


# -- addresses ----------------------------------------------------------------------------------

_IPV6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
# IPv6 prefixes whose last 32 bits are an IPv4 address that the packet ends up at.
_EMBEDS_V4 = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "::ffff:0:0/96",  # IPv4-mapped
        "::/96",  # IPv4-compatible (deprecated)
        "::ffff:0:0:0/96",  # IPv4-translated (SIIT)
        "64:ff9b::/96",  # NAT64 well-known prefix
        "64:ff9b:1::/48",  # NAT64 local-use prefix
    )
)
# Ranges Python's ``is_global`` (3.11) still calls global but that are not public unicast.
_NOT_GLOBAL = tuple(
    ipaddress.ip_network(n)
    for n in (
        "192.0.0.0/24",  # IETF protocol assignments
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "3fff::/20",  # documentation (RFC 9637)
        "2001:db8::/32",  # documentation
        "2001::/32",  # Teredo: the client address inside is obfuscated
    )
)


def embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries to (mapped, compatible, NAT64, 6to4), if any."""
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in net for net in _EMBEDS_V4):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_allowed(ip: Address | str) -> bool:
    """Public unicast only, the IPv4 address inside an IPv6 one included."""
    if isinstance(ip, str):
        ip = ipaddress.ip_address(ip)
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_v4(ip)
        if inner is not None:
            return address_allowed(inner)
        if ip not in _IPV6_GLOBAL_UNICAST:
            return False
    if ip.is_multicast or not ip.is_global:
        return False
    return not any(ip in net for net in _NOT_GLOBAL if net.version == ip.version)


def ip_literal(host: str) -> Address | None:
    """The address a host names without DNS, read as the resolver reads it: IPv6 literals (a zone
    id included), and IPv4 in every ``inet_aton`` spelling (decimal, hex, octal, short forms)."""
    host = host.strip("[]")
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            return None
    name = host.rstrip(".")  # "127.0.0.1." is the same address to most resolvers
    if not name or not all(c.isalnum() or c == "." for c in name):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(name))
    except (OSError, ValueError):
        return None


def _is_localhost(host: str) -> bool:
    name = host.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


# -- the URL ------------------------------------------------------------------------------------


def check_url(url: str | httpx.URL, *, allow_private: bool, https_only: bool = False) -> httpx.URL:
    """The URL parsed the way the HTTP client parses it, or ``EgressRefused``. Without DNS: a
    literal address is checked here, a name by ``checked_addresses`` (at save) or at connect."""
    text = str(url)
    if any(c.isspace() or ord(c) < 0x20 or c in "\\\x7f" for c in text):
        raise EgressRefused("must not contain spaces, control characters or backslashes")
    try:
        parsed = httpx.URL(text)
        parsed.host  # noqa: B018 - decodes IDNA as the request's Host header will ("xn--" fails)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise EgressRefused(f"is not a valid URL ({exc})") from None
    if parsed.scheme not in ("http", "https"):
        raise EgressRefused("must start with http:// or https://")
    if https_only and not allow_private and parsed.scheme != "https":
        raise EgressRefused("must use https")
    if parsed.userinfo:
        raise EgressRefused("must not contain a user name or password")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise EgressRefused("has a port out of range")
    host = parsed.raw_host.decode("ascii").lower()
    if not host:
        raise EgressRefused("must name a host")
    if "%" in host and ":" not in host:
        raise EgressRefused("must not percent-encode the host")
    if not allow_private:
        if _is_localhost(host):
            raise EgressRefused(f"must not point at this machine (localhost); {ALLOW_PRIVATE_HINT}")
        literal = ip_literal(host)
        if literal is not None and not address_allowed(literal):
            raise EgressRefused(_refused_message(literal))
    return parsed


def _refused_message(address: Address | str) -> str:
    return f"reaches a loopback, private, link-local or reserved address ({address}); {ALLOW_PRIVATE_HINT}"


async def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, through the OS resolver (unit tests replace this)."""
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class ResolveFailed(OSError):
    """The host does not resolve (a network problem at use time, a refusal at save time)."""


async def checked_addresses(host: str, port: int, *, allow_private: bool) -> list[str]:
    """Resolve ``host`` once; every address must be allowed (``EgressRefused`` otherwise)."""
    try:
        addresses = await resolve(host.strip("[]"), port)
    except (OSError, TimeoutError, ValueError) as exc:  # ValueError: a label IDNA refuses ("xn--")
        raise ResolveFailed(f"host {host!r} does not resolve") from exc
    if not addresses:
        raise ResolveFailed(f"host {host!r} does not resolve")
    if not allow_private:
        refused = [a for a in addresses if not address_allowed(a)]
        if refused:
            raise EgressRefused(_refused_message(refused[0]))
    return addresses


async def validate_url(url: str, *, allow_private: bool, https_only: bool = False) -> str:
    """The check when a URL is saved: the same rules the transport applies at every request. Returns
    the URL as given (stripped); ``EgressRefused`` says what is wrong."""
    url = url.strip()
    parsed = check_url(url, allow_private=allow_private, https_only=https_only)
    if not allow_private and ip_literal(parsed.raw_host.decode("ascii")) is None:
        try:
            await checked_addresses(parsed.raw_host.decode("ascii"), parsed.port or _default_port(parsed), allow_private=False)
        except ResolveFailed as exc:
            raise EgressRefused(str(exc)) from None
    return url


def _default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80


# -- the transport ------------------------------------------------------------------------------


class _PinningBackend(httpcore.AsyncNetworkBackend):
    """Resolves and checks the host inside the connect step, then connects to the checked address:
    nothing resolves the name a second time. TLS still runs on the name (httpcore passes the URL's
    host as ``server_hostname``), so the certificate is verified for it."""

    def __init__(self, allow_private: bool, inner: httpcore.AsyncNetworkBackend | None = None):
        self.allow_private = allow_private
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: typing.Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await checked_addresses(host, port, allow_private=self.allow_private)
        except ResolveFailed as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        last: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: typing.Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not an egress destination")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport with the guard: ``check_url`` on every request, the address check and
    pinning in the connect step. No proxy from the environment can carry a request around it."""

    def __init__(self, *, allow_private: bool, limits: httpx.Limits | None = None,
                 backend: httpcore.AsyncNetworkBackend | None = None):
        limits = limits or httpx.Limits(max_connections=50, max_keepalive_connections=20)
        super().__init__(trust_env=False, limits=limits)
        self.allow_private = allow_private
        # Same pool settings as httpx builds, plus the pinning network backend (httpx has no
        # parameter for it).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_PinningBackend(allow_private, backend),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            check_url(request.url, allow_private=self.allow_private)
        except EgressRefused as exc:
            exc.request = request
            raise
        return await super().handle_async_request(request)


def client(*, allow_private: bool, timeout: float | httpx.Timeout = 30.0, limits: httpx.Limits | None = None,
           backend: httpcore.AsyncNetworkBackend | None = None) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for anything Kabar sends outside: guarded, no redirects followed,
    no proxy or credentials taken from the environment."""
    return httpx.AsyncClient(
        transport=GuardedTransport(allow_private=allow_private, limits=limits, backend=backend),
        follow_redirects=False,
        trust_env=False,
        timeout=timeout,
    )


# -- redirects and credentials -------------------------------------------------------------------


def same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    return (a.scheme, a.raw_host.lower(), a.port or _default_port(a)) == (b.scheme, b.raw_host.lower(), b.port or _default_port(b))


def host_in(url: httpx.URL, domains: typing.Iterable[str]) -> bool:
    """Is the URL's host one of ``domains`` or below one of them (``a.fbsbx.com`` is in ``fbsbx.com``)?"""
    host = url.raw_host.decode("ascii").lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in domains)


@asynccontextmanager
async def stream_get(http: httpx.AsyncClient, url: str, *, credentials: Mapping[str, str] | None = None,
                     trusted: Callable[[httpx.URL], bool] = lambda _: False, timeout: float | None = None,
                     max_redirects: int = MAX_REDIRECTS) -> AsyncIterator[httpx.Response]:
    """GET ``url`` streamed, following up to ``max_redirects`` redirects by hand: every hop goes
    through the guarded transport again. ``credentials`` (headers) go only to a URL ``trusted``
    accepts, and never on past a redirect to another origin."""
    current = check_url(url, allow_private=True)  # the transport applies the address rules
    send_credentials = bool(credentials) and trusted(current)
    for _ in range(max_redirects + 1):
        headers = dict(credentials or {}) if send_credentials else {}
        request = http.build_request("GET", current, headers=headers, timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT)
        response = await http.send(request, stream=True, follow_redirects=False)
        if response.is_redirect:
            await response.aclose()
            following = current.join(response.headers["location"])
            check_url(following, allow_private=True)
            send_credentials = send_credentials and same_origin(current, following) and trusted(following)
            current = following
            continue
        try:
            yield response
        finally:
            await response.aclose()
        return
    raise EgressRefused(f"more than {max_redirects} redirects")
