"""The egress guard itself (kabar.egress): the address parser and policy, the pinning transport
(DNS rebinding, with an injected resolver and network backend, nothing leaves the machine), and
redirects and credentials against real servers on 127.0.0.1."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpcore
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kabar import egress
from kabar.channels import providers
from kabar.channels.service import ChannelConfig, Secrets
from tests.security.egress_support import SECRET, Server

PUBLIC = "93.184.215.14"

# -- the address parser and policy ---------------------------------------------------------------

REFUSED = [
    "http://127.0.0.1/",
    "http://2130706433/",  # decimal
    "http://0x7f000001/",  # hex
    "http://0x7f.1/",  # hex, short
    "http://0177.0.0.1/",  # octal (httpx refuses the URL outright)
    "http://127.1/",  # short
    "http://127.0.1/",
    "http://0/",
    "http://0.0.0.0/",
    "http://127.0.0.1./",  # trailing dot
    "http://167772161/",  # 10.0.0.1 in decimal
    "http://0xa9fea9fe/",  # 169.254.169.254 (cloud metadata)
    "http://169.254.169.254/latest/meta-data",
    "http://100.64.0.1/",  # CGNAT
    "http://192.168.1.1/",
    "http://172.16.0.1/",
    "http://224.0.0.1/",
    "http://255.255.255.255/",
    "http://192.0.0.1/",
    "http://[::1]/",
    "http://[::]/",
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped
    "http://[::ffff:7f00:1]/",
    "http://[::127.0.0.1]/",  # IPv4-compatible
    "http://[::ffff:0:a00:1]/",  # IPv4-translated
    "http://[64:ff9b::a00:1]/",  # NAT64 embedding 10.0.0.1
    "http://[64:ff9b::127.0.0.1]/",
    "http://[64:ff9b:1::a00:1]/",  # NAT64 local use
    "http://[2002:7f00:1::1]/",  # 6to4 embedding 127.0.0.1
    "http://[2002:c0a8:101::]/",  # 6to4 embedding 192.168.1.1
    "http://[2001::1]/",  # Teredo
    "http://[fe80::1]/",  # link local
    "http://[fe80::1%25eth0]/",
    "http://[fc00::1]/",  # ULA
    "http://[fd12:3456::1]/",
    "http://[fec0::1]/",  # site local (deprecated)
    "http://[ff02::1]/",  # multicast
    "http://[ff0e::1]/",
    "http://[2001:db8::1]/",  # documentation
    "http://localhost/",
    "http://LOCALHOST./",
    "http://localhost../",
    "http://api.localhost/",
    "http://127。0。0。1/",  # ideographic dots, normalised by the URL parser
    "http://%31%32%37.0.0.1/",
    "ftp://example.com/",
    "file:///etc/passwd",
    "gopher://example.com/",
    "http://user:pass@example.com/",
    "http://example.com@127.0.0.1/",
    "http://example.com\\@127.0.0.1/",
    "http://exa mple.com/",
    "http:///nohost",
    "http://xn--/x",  # a label IDNA refuses
    "http://127.0.0.1:99999/x",  # port out of range
    "not a url",
]


@pytest.mark.parametrize("url", REFUSED)
def test_every_spelling_of_an_internal_address_is_refused(url):
    with pytest.raises(egress.EgressRefused):
        egress.check_url(url, allow_private=False)


@pytest.mark.parametrize("url", ["https://8.8.8.8/x", "http://134744072/", "http://0x08080808/", "https://[2606:4700::1111]/",
                                 "https://[64:ff9b::808:808]/", "https://[2002:808:808::1]/", "https://hooks.example.com:8443/in?x=1"])
def test_public_addresses_and_names_pass_the_url_rules(url):
    egress.check_url(url, allow_private=False)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "http://u:p@127.0.0.1/", "http://127.0.0.1\\@x/", "file:///etc/passwd"])
def test_allow_private_still_enforces_the_url_rules(url):
    with pytest.raises(egress.EgressRefused):
        egress.check_url(url, allow_private=True)
    egress.check_url("http://127.0.0.1:8080/x", allow_private=True)


def test_https_only_for_credentials_unless_private_allowed():
    with pytest.raises(egress.EgressRefused, match="https"):
        egress.check_url("http://api.example.com/", allow_private=False, https_only=True)
    egress.check_url("http://127.0.0.1:9/", allow_private=True, https_only=True)


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("8.8.8.8", True), ("2606:4700::1111", True), ("64:ff9b::808:808", True), ("2002:808:808::1", True),
        ("::ffff:8.8.8.8", True), ("127.0.0.1", False), ("0.0.0.0", False), ("10.0.0.1", False), ("100.64.0.1", False),
        ("198.18.0.1", False), ("240.0.0.1", False), ("192.88.99.1", False), ("::ffff:10.0.0.1", False),
        ("64:ff9b::c0a8:101", False), ("2002:a00:1::1", False), ("::7f00:1", False), ("fe80::1%eth0", False),
        ("fd00::1", False), ("fec0::1", False), ("3fff::1", False), ("100::1", False), ("ff05::1", False),
    ],
)
def test_address_policy(address, allowed):
    assert egress.address_allowed(address) is allowed


_PRIVATE_V4 = [ipaddress.ip_network(n) for n in ("127.0.0.0/8", "10.0.0.0/8", "0.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")]


@st.composite
def inet_aton_spelling(draw: Any) -> tuple[int, str]:
    """A non-global IPv4 address and one of its ``inet_aton`` spellings (1-4 parts, each decimal,
    hex or octal; the last part holds the remaining bytes)."""
    net = draw(st.sampled_from(_PRIVATE_V4))
    value = int(net.network_address) + draw(st.integers(0, net.num_addresses - 1))
    parts_count = draw(st.integers(1, 4))
    raw = value.to_bytes(4, "big")
    parts = [*raw[: parts_count - 1], int.from_bytes(raw[parts_count - 1 :], "big")]
    spelled = []
    for part in parts:
        style = draw(st.sampled_from(["dec", "hex", "HEX", "oct"]))
        spelled.append({"dec": str(part), "hex": hex(part), "HEX": "0X" + format(part, "X"), "oct": "0" + format(part, "o")}[style])
    return value, ".".join(spelled)


@settings(max_examples=300, deadline=None)
@given(inet_aton_spelling())
def test_any_inet_aton_spelling_of_a_private_address_is_refused(case):
    value, host = case
    assert egress.ip_literal(host) == ipaddress.IPv4Address(value)  # read as the OS resolver reads it
    assert ipaddress.IPv4Address(socket.inet_aton(host)) == ipaddress.IPv4Address(value)
    with pytest.raises(egress.EgressRefused):
        egress.check_url(f"http://{host}:8080/x", allow_private=False)


# -- the pinning transport: one resolution, checked, then connected to ---------------------------


class FakeStream(httpcore.AsyncNetworkStream):
    """What the socket would carry: records writes and TLS, answers 200."""

    def __init__(self, log: dict[str, Any]):
        self.log = log
        self.answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        answer, self.answer = self.answer, b""
        return answer

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.log.setdefault("written", b"")
        self.log["written"] += buffer

    async def aclose(self) -> None:
        pass

    async def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> FakeStream:
        self.log["server_hostname"] = server_hostname
        return self

    def get_extra_info(self, info: str) -> Any:
        return None


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """Stands in for the network under the guard: no packet leaves the machine."""

    def __init__(self) -> None:
        self.connects: list[tuple[str, int]] = []
        self.log: dict[str, Any] = {}

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        self.connects.append((host, port))
        return FakeStream(self.log)

    async def sleep(self, seconds: float) -> None:
        pass


@pytest.fixture
def rebinding_dns(monkeypatch):
    """rebind.example.test answers a public address once, then 127.0.0.1 (a DNS rebinding attack)."""
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        if host == "rebind.example.test":
            return [PUBLIC] if len(calls) == 1 else ["127.0.0.1"]
        if host == "mixed.example.test":
            return [PUBLIC, "10.0.0.7"]
        if host == "public.example.test":
            return [PUBLIC]
        raise socket.gaierror("no such host")

    monkeypatch.setattr(egress, "resolve", resolve)
    return calls


async def test_the_connection_goes_to_the_checked_address_with_the_name_kept(rebinding_dns):
    backend = RecordingBackend()
    async with egress.client(allow_private=False, backend=backend) as http:
        response = await http.get("https://rebind.example.test:8443/in?x=1")
    assert response.status_code == 200
    assert backend.connects == [(PUBLIC, 8443)]  # the address that was checked, never the name again
    assert rebinding_dns == ["rebind.example.test"]  # resolved once
    assert backend.log["server_hostname"] == "rebind.example.test"  # TLS SNI and verification: the name
    assert b"Host: rebind.example.test:8443\r\n" in backend.log["written"]


async def test_a_rebound_answer_at_use_time_is_refused(rebinding_dns):
    # Saved while the name answered a public address...
    assert await egress.validate_url("http://rebind.example.test/hook", allow_private=False) == "http://rebind.example.test/hook"
    backend = RecordingBackend()
    # ...used after it started answering 127.0.0.1: refused before any connection.
    async with egress.client(allow_private=False, backend=backend) as http:
        with pytest.raises(egress.EgressRefused, match="127.0.0.1"):
            await http.post("http://rebind.example.test/hook", content=b"{}")
    assert backend.connects == []


async def test_one_private_answer_among_public_ones_is_refused(rebinding_dns):
    with pytest.raises(egress.EgressRefused, match="10.0.0.7"):
        await egress.validate_url("https://mixed.example.test/", allow_private=False)
    backend = RecordingBackend()
    async with egress.client(allow_private=False, backend=backend) as http:
        with pytest.raises(egress.EgressRefused):
            await http.get("https://mixed.example.test/")
    assert backend.connects == []


async def test_a_name_that_does_not_resolve_is_refused_at_save_and_a_connect_error_at_use(rebinding_dns):
    with pytest.raises(egress.EgressRefused, match="does not resolve"):
        await egress.validate_url("https://gone.example.test/", allow_private=False)
    async with egress.client(allow_private=False, backend=RecordingBackend()) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get("https://gone.example.test/")


async def test_no_proxy_from_the_environment_carries_a_request_around_the_guard(monkeypatch, rebinding_dns):
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    backend = RecordingBackend()
    async with egress.client(allow_private=False, backend=backend) as http:
        await http.get("http://public.example.test/")
    assert backend.connects == [(PUBLIC, 80)]


# -- redirects and credentials, against real servers on 127.0.0.1 --------------------------------


@pytest.fixture
def servers() -> AsyncIterator[tuple[Server, Server]]:
    a, b = Server(), Server()
    yield a, b
    a.stop()
    b.stop()


async def test_redirects_are_bounded(servers):
    a, _ = servers
    a.redirect("/loop", "/loop")
    async with egress.client(allow_private=True) as http:
        with pytest.raises(egress.EgressRefused, match="redirects"):
            async with egress.stream_get(http, a.url("/loop")):
                pass
    assert len(a.requests("/loop")) == egress.MAX_REDIRECTS + 1


@pytest.mark.parametrize("location", ["file:///etc/passwd", "gopher://127.0.0.1:70/x", "http://user:pw@127.0.0.1:{port}/secret"])
async def test_each_redirect_hop_is_checked_again(servers, location):
    a, _ = servers
    a.redirect("/start", location.format(port=a.port))
    async with egress.client(allow_private=True) as http:
        with pytest.raises(egress.EgressRefused):
            async with egress.stream_get(http, a.url("/start")):
                pass
    assert a.requests("/secret") == []


class NatBackend(httpcore.AsyncNetworkBackend):
    """The test's stand-in for the internet: the public address PUBLIC is served by a real server
    on 127.0.0.1 (nothing leaves the machine)."""

    def __init__(self, port: int):
        self.port = port
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        assert host == PUBLIC, f"the guard let a connection to {host} through"
        return await self.inner.connect_tcp("127.0.0.1", self.port, timeout)

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


@pytest.mark.parametrize("location", ["http://127.0.0.1:{port}/secret", "http://2130706433:{port}/secret", "http://[::ffff:127.0.0.1]:{port}/secret",
                                      "http://localhost:{port}/secret", "http://mixed.example.test:{port}/secret"])
async def test_a_public_url_redirecting_to_an_internal_one_is_refused_at_the_hop(servers, rebinding_dns, location):
    a, _ = servers
    a.redirect("/start", location.format(port=a.port))
    async with egress.client(allow_private=False, backend=NatBackend(a.port)) as http:
        with pytest.raises(egress.EgressRefused):
            async with egress.stream_get(http, f"http://public.example.test:{a.port}/start"):
                pass
    assert [s.path for s in a.requests()] == ["/start"]  # the first hop happened; the secret was never asked for


async def test_credentials_go_to_the_trusted_origin_only_and_never_across_a_redirect(servers):
    a, b = servers
    a.redirect("/same", "/secret")
    a.redirect("/away", b.url("/secret", host="localhost"))
    key = {"X-API-Key": "kapso-key-SECRET"}

    def trusted(url: httpx.URL) -> bool:
        return egress.same_origin(url, httpx.URL(a.url()))

    async with egress.client(allow_private=True) as http:
        for url in (a.url("/same"), a.url("/away"), b.url("/secret")):
            async with egress.stream_get(http, url, credentials=key, trusted=trusted) as response:
                assert await response.aread() == SECRET
    assert [s.headers.get("x-api-key") for s in a.requests()] == ["kapso-key-SECRET"] * 3  # /same, /secret, /away
    assert [s.headers.get("x-api-key") for s in b.requests()] == [None, None]  # after the redirect, and asked directly


def _channel(provider: str, base: str) -> ChannelConfig:
    return ChannelConfig("ws", provider, "pn", None, base, Secrets({"api_key": "k"}))


@pytest.mark.parametrize(
    ("provider", "url", "trusted"),
    [
        ("meta", "https://graph.facebook.com/v24.0/123", True),
        ("meta", "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1", True),
        ("meta", "http://lookaside.fbsbx.com/x", False),  # not over plain http
        ("meta", "https://fbsbx.com.evil.example/x", False),
        ("meta", "https://evilfbsbx.com/x", False),
        ("meta", "https://media.example.com/x", False),
        ("kapso", "https://api.kapso.ai/meta/whatsapp/v24.0/media/1", True),
        ("kapso", "https://lookaside.fbsbx.com/x", False),  # the Kapso key is not Meta's business
        ("kapso", "https://files.kapso-cdn.example/x", False),
        ("kapso", "http://api.kapso.ai/x", False),  # another origin (scheme)
        ("kapso", "https://api.kapso.ai:8443/x", False),  # another origin (port)
    ],
)
def test_a_providers_key_goes_only_to_its_own_hosts(provider, url, trusted):
    base = {"meta": "https://graph.facebook.com/v24.0", "kapso": "https://api.kapso.ai/meta/whatsapp/v24.0"}[provider]
    assert providers.trusted_hosts(_channel(provider, base))(httpx.URL(url)) is trusted
