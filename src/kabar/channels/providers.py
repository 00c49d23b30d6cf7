"""A provider client for a channel: Kapso (and the Kapso-compatible fake) authenticate with
``X-API-Key`` on the Meta proxy; Meta's Graph API takes the access token as a bearer token.

The key goes only to the provider's own hosts: the API base's origin, and for Meta its media
hosts (the lookaside URLs Meta hands out need the token). A Kapso ``media_url`` on another host is
fetched without the Kapso key. Every call goes through the egress guard (``kabar.egress``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from kabar import egress
from kabar.channels.graph import GraphClient, refused
from kabar.channels.service import ChannelConfig, check_base_url_now

META_HOSTS = ("facebook.com", "fbsbx.com")  # graph.facebook.com, lookaside.fbsbx.com

_HTTP_KEY = "channels.http"


def http_client(runtime: Any) -> httpx.AsyncClient:
    """One pooled client per process: keeps TLS connections to the provider warm between sends."""
    client = runtime.extras.get(_HTTP_KEY)
    if client is None or client.is_closed:
        client = egress.client(allow_private=egress.private_allowed(runtime.settings))
        runtime.extras[_HTTP_KEY] = client
    return client


async def close(runtime: Any) -> None:
    client = runtime.extras.pop(_HTTP_KEY, None)
    if client is not None:
        await client.aclose()


def trusted_hosts(channel: ChannelConfig) -> Callable[[httpx.URL], bool]:
    """Which URLs may receive the channel's key."""
    base = httpx.URL(channel.api_base_url)

    def trusted(url: httpx.URL) -> bool:
        if egress.same_origin(url, base):
            return True
        return channel.provider == "meta" and url.scheme == "https" and egress.host_in(url, META_HOSTS)

    return trusted


def client_for(runtime: Any, channel: ChannelConfig) -> GraphClient:
    """The channel's provider client; ``ProviderError`` (permanent, ``url_refused``) when its API base
    is refused by the same check that runs when it is saved."""
    try:
        check_base_url_now(channel.api_base_url, runtime.settings)
    except egress.EgressRefused as exc:
        raise refused(exc) from exc
    api_key = channel.secrets.get("api_key")
    if channel.provider == "meta":
        headers = {"Authorization": f"Bearer {api_key}"}
        media_query: dict[str, str] = {}
    else:
        headers = {"X-API-Key": api_key} if api_key else {}
        media_query = {"phone_number_id": channel.phone_number_id}  # the proxy needs it for media ids
    return GraphClient(
        http_client(runtime),
        channel.api_base_url,
        headers,
        channel.phone_number_id,
        timeout=runtime.settings.provider_timeout,
        media_query=media_query,
        trusted=trusted_hosts(channel),
    )
