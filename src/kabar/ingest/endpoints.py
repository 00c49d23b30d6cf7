"""Inbound provider webhooks (no user auth; the signature on the raw body is the credential)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Request, Response, get, post
from litestar.params import QueryParameter

from kabar.channels import service as channels
from kabar.crypto import constant_time_equals
from kabar.errors import Problem
from kabar.http import EncodedJSON, runtime_of
from kabar.ingest import service
from kabar.ratelimit import client_address

# Meta payloads can reach 3 MB (wire-formats §3.3); leave room above that.
WEBHOOK_MAX_BODY = 4 * 1024 * 1024


@post("/webhooks/kapso", status_code=200, request_max_body_size=WEBHOOK_MAX_BODY, tags=["webhooks"])
async def kapso_webhook(request: Request) -> EncodedJSON:
    """Kapso v2 events (single or batched) and Kapso-forwarded Meta payloads."""
    return await _receive(request, "kapso")


@post("/webhooks/meta", status_code=200, request_max_body_size=WEBHOOK_MAX_BODY, tags=["webhooks"])
async def meta_webhook(request: Request) -> EncodedJSON:
    """Meta WhatsApp Cloud API webhooks (``X-Hub-Signature-256``)."""
    return await _receive(request, "meta")


async def _receive(request: Request, provider: str) -> EncodedJSON:
    runtime = runtime_of(request)
    raw = await request.body()
    source = client_address(request, runtime.settings)
    return EncodedJSON(msgspec.json.encode(await service.receive(runtime, provider, raw, request.headers, source)))


@get("/webhooks/meta", tags=["webhooks"], media_type="text/plain")
async def meta_verify(
    request: Request,
    mode: Annotated[str | None, QueryParameter(name="hub.mode")] = None,
    token: Annotated[str | None, QueryParameter(name="hub.verify_token")] = None,
    challenge: Annotated[str | None, QueryParameter(name="hub.challenge")] = None,
) -> Response[str]:
    """Meta's subscription handshake: echo ``hub.challenge`` when the verify token is one of ours."""
    if mode != "subscribe" or not token or challenge is None:
        raise Problem(403, "forbidden", "Forbidden", "Not a valid subscription request")
    runtime = runtime_of(request)
    configs = await runtime.db.read(channels.load_all, runtime.cipher, "meta")
    # Compare against every configured token, without stopping early (constant time per token).
    matched = [constant_time_equals(token, c.secrets.get("verify_token") or "\x00") for c in configs]
    if not any(matched):
        raise Problem(403, "forbidden", "Forbidden", "The verify token does not match")
    return Response(challenge, media_type="text/plain", status_code=200)


ROUTES = [kapso_webhook, meta_webhook, meta_verify]
