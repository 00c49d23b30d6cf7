"""The egress guard through Kabar's public interfaces: URLs refused when saved (webhooks, channel
API base, ARI's model endpoint), a signed webhook's media URL that points inside the machine,
provider keys kept to the provider's hosts, and the channel test that never answers 500.

Most suites run with KABAR_WEBHOOKS_ALLOW_PRIVATE=1 (the fake provider is on 127.0.0.1); the
strict apps here run with it off. Every server is a real one on 127.0.0.1.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import pytest

from kabar import egress
from kabar.channels import service as channels
from kabar.channels.fake import payloads as p
from kabar.db import tables as t
from tests.channels.support import Channel, configure, post_kapso, post_meta, rows
from tests.conftest import app_client, base_settings, create_database
from tests.foundation.conftest import jwks_server, rsa_key  # noqa: F401 - a real JWKS server on 127.0.0.1
from tests.helpers import Tenant, assert_problem, make_tenant, wait_for
from tests.security.egress_support import SECRET, Route, Server

PHONE = "+6281299990000"
KAPSO_BASE = "https://api.kapso.ai/meta/whatsapp/v24.0"


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.stop()


@pytest.fixture
def other_server() -> Iterator[Server]:
    s = Server()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def strict_database(backend: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    return create_database(backend, tmp_path_factory.mktemp("egress-db"), "egress")


@pytest.fixture(scope="module")
async def strict(strict_database: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    """An app with KABAR_WEBHOOKS_ALLOW_PRIVATE off and its own job runner, on its own database (the
    session's permissive app must not pick up its jobs)."""
    url = strict_database
    settings = base_settings(url, tmp_path_factory.mktemp("egress"), webhooks_allow_private=False)
    async with app_client(settings, run_jobs=True) as test_client:
        yield test_client


@pytest.fixture(scope="module")
async def strict_shared(settings: Any) -> AsyncIterator[Any]:
    """The session's database seen by an app with the default policy (no job runner)."""
    async with app_client(replace(settings, webhooks_allow_private=False)) as test_client:
        yield test_client


# -- refused when saved: one rule, a 422 naming the field -------------------------------------------

SAVE_REFUSED = [
    "http://2130706433/x",
    "http://0x7f000001/x",
    "http://127.1/x",
    "http://0/x",
    "http://[::ffff:127.0.0.1]/x",
    "http://[64:ff9b::a00:1]/x",
    "http://[2002:c0a8:101::1]/x",
    "http://[fd00::1]/x",
    "http://localhost./x",
    "http://user:pw@example.com/x",
    "ftp://example.com/x",
]


@pytest.mark.parametrize("url", SAVE_REFUSED)
async def test_webhook_url_refused_when_saved(strict_shared, url):
    tenant = await make_tenant(strict_shared)
    response = await strict_shared.post(f"{tenant.base}/webhooks", json={"url": url, "events": ["*"]}, headers=tenant.owner.headers)
    assert assert_problem(response, 422)["errors"][0]["field"] == "url"
    assert (await strict_shared.get(f"{tenant.base}/webhooks", headers=tenant.owner.headers)).json()["data"] == []


@pytest.mark.parametrize("url", [u.replace("http://", "https://") if u.startswith("http://") else u for u in SAVE_REFUSED] + ["http://api.example.com/v1"])
async def test_channel_api_base_url_refused_when_saved(strict_shared, url):
    tenant = await make_tenant(strict_shared)
    body = {"provider": "kapso", "phone_number_id": "pn" + secrets.token_hex(5), "api_key": "k", "webhook_secret": "w", "api_base_url": url}
    response = await strict_shared.put(f"{tenant.base}/channel", json=body, headers=tenant.owner.headers)
    assert assert_problem(response, 422)["errors"][0]["field"] == "api_base_url"
    assert_problem(await strict_shared.get(f"{tenant.base}/channel", headers=tenant.owner.headers), 404)


@pytest.mark.parametrize("url", [u for u in SAVE_REFUSED if not u.startswith("ftp")])
async def test_ari_base_url_refused_when_saved(strict_shared, url):
    tenant = await make_tenant(strict_shared)
    cfg = f"{tenant.base}/ari/config"
    llm = {"provider": "custom", "base_url": url, "model": "m", "api_key": "sk-x"}
    assert assert_problem(await strict_shared.put(cfg, json={"llm": llm}, headers=tenant.owner.headers), 422)["errors"][0]["field"] == "llm.base_url"
    alternate = {"provider": "custom", "base_url": "https://93.184.215.14/v1", "model": "m", "alternate": {"provider": "custom", "base_url": url, "model": "b"}}
    assert assert_problem(await strict_shared.put(cfg, json={"llm": alternate}, headers=tenant.owner.headers), 422)["errors"][0]["field"] == "llm.alternate.base_url"
    assert (await strict_shared.get(cfg, headers=tenant.owner.headers)).json()["llm"] is None


async def test_ari_ollama_default_on_loopback_needs_allow_private(strict_shared, client):
    for app, status in ((strict_shared, 422), (client, 200)):
        tenant = await make_tenant(app)
        response = await app.put(f"{tenant.base}/ari/config", json={"llm": {"provider": "ollama", "model": "sealion"}}, headers=tenant.owner.headers)
        assert response.status_code == status, response.text


# -- a signed webhook's media URL pointing inside the machine ---------------------------------------


async def _strict_channel(app: Any) -> tuple[Tenant, Channel]:
    tenant = await make_tenant(app)
    channel = Channel("kapso", "pn" + secrets.token_hex(6), "whsec-" + secrets.token_hex(8), "", "", "kapso-key-" + secrets.token_hex(4))
    # A public API base (never called here: a Kapso media_url is fetched as it is).
    await app.runtime.db.transaction(channels.configure, tenant.ws, app.runtime.cipher, provider="kapso", phone_number_id=channel.pnid,
                                     secrets={"api_key": channel.api_key, "webhook_secret": channel.webhook_secret}, api_base_url=KAPSO_BASE)
    return tenant, channel


async def _api_messages(app: Any, tenant: Tenant) -> list[dict[str, Any]]:
    listed = (await app.get(f"{tenant.base}/conversations", headers=tenant.owner.headers)).json()["data"]
    if not listed:
        return []
    return (await app.get(f"{tenant.base}/conversations/{listed[0]['id']}/messages", headers=tenant.owner.headers)).json()["data"]


def _image(media_url: str) -> dict[str, Any]:
    return {"type": "image", "image": {"id": "MEDIA" + secrets.token_hex(4), "mime_type": "image/jpeg", "caption": "bukti"},
            "kapso": {"media_url": media_url}}


@pytest.mark.parametrize("spelling", ["127.0.0.1", "2130706433", "0x7f000001", "127.1", "localhost", "[::ffff:127.0.0.1]"])
async def test_webhook_media_url_on_loopback_is_never_fetched_nor_served(strict, server, spelling):
    """Before the guard, Kabar followed the redirect to /secret and served the body as an upload."""
    server.redirect("/media/1", server.url("/secret"))
    tenant, channel = await _strict_channel(strict)
    doc = p.kapso_received(pnid=channel.pnid, phone=PHONE, message=_image(f"http://{spelling}:{server.port}/media/1"))
    assert (await post_kapso(strict, channel, doc)).status_code == 200

    async def failed() -> Any:
        messages = await _api_messages(strict, tenant)
        return messages[0]["media"] if messages and messages[0]["media"].get("download_error") else None

    media = await wait_for(failed, timeout=30, what="the media download to be refused")
    assert media.get("id") is None and "url" not in media  # nothing to open, nothing served
    assert "refused" in media["download_error"]["title"]
    assert server.requests() == []  # not even the first hop
    assert await rows(strict, t.uploads, tenant.ws) == []


# -- the provider's key goes to the provider's host only -------------------------------------------


uses_jobs = pytest.mark.usefixtures("jobs")


async def _downloaded(app: Any, tenant: Tenant) -> Any:
    async def done() -> Any:
        messages = await _api_messages(app, tenant)
        media = messages[0]["media"] if messages else {}
        return media if media.get("id") or media.get("download_error") else None

    return await wait_for(done, timeout=30, what="the media download")


@uses_jobs
@pytest.mark.parametrize("via_redirect", [False, True])
async def test_kapso_key_not_sent_to_a_foreign_media_host(client, tenant, server, other_server, via_redirect):
    """``server`` is the Kapso API base; the media lives on another host (``localhost``)."""
    channel = await configure(tenant, "kapso", api_base_url=server.url("/meta/whatsapp/v24.0"))
    foreign = other_server.url("/secret", host="localhost")
    server.redirect("/meta/whatsapp/v24.0/media/1", foreign)
    media_url = server.url("/meta/whatsapp/v24.0/media/1") if via_redirect else foreign
    doc = p.kapso_received(pnid=channel.pnid, phone=PHONE, message=_image(media_url))
    assert (await post_kapso(client, channel, doc)).status_code == 200
    media = await _downloaded(client, tenant)
    assert media.get("id"), media
    assert [s.headers.get("x-api-key") for s in other_server.requests()] == [None]
    if via_redirect:  # the provider's own host did get its key
        assert [s.headers.get("x-api-key") for s in server.requests()] == [channel.api_key]
    download = await client.get(f"{tenant.base}/uploads/{media['id']}", headers=tenant.owner.headers)
    assert download.status_code == 200 and download.content == SECRET  # allowed here: KABAR_WEBHOOKS_ALLOW_PRIVATE=1


@uses_jobs
async def test_meta_token_not_sent_to_a_media_url_on_another_host(client, tenant, server, other_server):
    channel = await configure(tenant, "meta", api_base_url=server.url("/v24.0"))
    server.json("/v24.0/MEDIA-1", {"url": other_server.url("/secret", host="localhost"), "mime_type": "image/jpeg"})
    body = {"from": PHONE[1:], "id": "wamid.M-" + secrets.token_hex(4), "timestamp": "1767231000", "type": "image",
            "image": {"id": "MEDIA-1", "mime_type": "image/jpeg"}}
    assert (await post_meta(client, channel, p.meta_envelope(channel.pnid, {"messages": [body]}))).status_code == 200
    media = await _downloaded(client, tenant)
    assert media.get("id"), media
    assert [s.headers.get("authorization") for s in server.requests("/v24.0/MEDIA-1")] == [f"Bearer {channel.api_key}"]
    assert [s.headers.get("authorization") for s in other_server.requests()] == [None]


# -- the channel test against a URL accepted when saved never answers 500 ----------------------------


@pytest.fixture(scope="module")
async def impatient(settings: Any) -> AsyncIterator[Any]:
    async with app_client(replace(settings, provider_timeout=0.5)) as test_client:
        yield test_client


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("case", ["connection refused", "dns failure", "tls error", "timeout", "refused at use time", "html answer",
                                  "port out of range", "bad idna label", "bad idna host"])
async def test_channel_test_never_answers_500(impatient, strict_shared, server, monkeypatch, case):
    """An API base URL is refused when saved, or the channel test answers a problem: never a 500.
    (Before: a port out of range or a host IDNA refuses was saved, then the test answered 500.)"""
    tenant = await make_tenant(impatient)
    base = {
        "connection refused": f"http://127.0.0.1:{_closed_port()}/v24.0",
        "dns failure": "http://gone.example.test/v24.0",
        "tls error": server.url("/v24.0").replace("http://", "https://"),  # a plain HTTP server
        "timeout": server.url("/v24.0"),
        "refused at use time": server.url("/v24.0"),
        "html answer": server.url("/v24.0"),
        "port out of range": "http://127.0.0.1:99999/v24.0",
        "bad idna label": "http://xn--/v24.0",
        "bad idna host": "http://\u00e9xample..com/v24.0",
    }[case]
    server.routes["/v24.0/*"] = {"timeout": Route(hang=True), "html answer": Route(200, b"<html>hi</html>", {"content-type": "text/html"})}.get(case, Route(404, b""))

    async def no_dns(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    if case == "dns failure":
        monkeypatch.setattr(egress, "resolve", no_dns)
    body = {"provider": "kapso", "phone_number_id": "pn" + secrets.token_hex(5), "api_key": "kapso-key-SECRET", "webhook_secret": "w", "api_base_url": base}
    saved = await impatient.put(f"{tenant.base}/channel", json=body, headers=tenant.owner.headers)  # allow-private: loopback accepted
    if saved.status_code == 422:
        assert assert_problem(saved, 422)["errors"][0]["field"] == "api_base_url"
        assert case in ("port out of range", "bad idna label", "bad idna host"), saved.text
        return
    assert saved.status_code == 200, saved.text
    app = strict_shared if case == "refused at use time" else impatient
    response = await app.post(f"{tenant.base}/channel/test", json={"to": PHONE}, headers=tenant.owner.headers)
    assert response.status_code != 500 and 400 <= response.status_code < 600, response.text
    problem = assert_problem(response, response.status_code)
    assert "kapso-key-SECRET" not in response.text
    if case == "refused at use time":
        assert response.status_code == 422 and problem["errors"][0]["field"] == "api_base_url"
    elif case in ("timeout", "html answer"):  # the request went out: the provider may have taken it
        assert response.status_code == 504
    else:
        assert response.status_code == 502, problem


# -- ARI's model and the identity provider's keys ----------------------------------------------------


@pytest.mark.parametrize("spelling", ["127.0.0.1", "2130706433", "localhost"])
async def test_ari_model_on_loopback_is_not_called(server, spelling):
    """A base_url saved while private addresses were allowed (or a name that rebinds) is refused
    at call time: the model server gets nothing, ARI gets an LlmError and falls back."""
    from kabar.ari import llm

    server.json("/v1/chat/completions", {"choices": [{"message": {"content": "hi"}}]})
    target = llm.Target(arm="a", provider="custom", base_url=f"http://{spelling}:{server.port}/v1", model="m", api_key="sk-SECRET", retries=2)
    with pytest.raises(llm.LlmError, match="refused"):
        await llm.chat(target, [{"role": "user", "content": "halo"}])  # no client given: the guard with private addresses off
    assert server.requests() == []


async def test_jwks_on_loopback_is_not_fetched_without_allow_private(settings, jwks_server):
    import jwt

    key = rsa_key()
    jwks_server.publish(("key-1", key))
    token = jwt.encode({"sub": "s-" + secrets.token_hex(4), "aud": "authenticated", "exp": 4102444800, "email": f"jwks-{secrets.token_hex(4)}@example.test"},
                       key, algorithm="RS256", headers={"kid": "key-1"})
    for allow_private, status in ((False, 401), (True, 200)):
        idp = replace(settings, jwt_secret=None, jwt_jwks_url=jwks_server.url, webhooks_allow_private=allow_private)
        async with app_client(idp) as app:
            response = await app.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == status, response.text
        assert jwks_server.requests == (0 if not allow_private else 1)
