"""A provider client for a channel: Kapso (and the Kapso-compatible fake) authenticate with
``X-API-Key`` on the Meta proxy; Meta's Graph API takes the access token as a bearer token."""

from __future__ import annotations

from typing import Any

import httpx

from kabar.channels.graph import GraphClient
from kabar.channels.service import ChannelConfig

_HTTP_KEY = "channels.http"


def http_client(runtime: Any) -> httpx.AsyncClient:
    """One pooled client per process: keeps TLS connections to the provider warm between sends."""
    client = runtime.extras.get(_HTTP_KEY)
    if client is None or client.is_closed:
        client = httpx.AsyncClient(limits=httpx.Limits(max_connections=50, max_keepalive_connections=20))
        runtime.extras[_HTTP_KEY] = client
    return client


async def close(runtime: Any) -> None:
    client = runtime.extras.pop(_HTTP_KEY, None)
    if client is not None:
        await client.aclose()


def client_for(runtime: Any, channel: ChannelConfig) -> GraphClient:
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
    )
