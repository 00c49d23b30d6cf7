"""One outgoing-webhook POST: the body, the signature, the attempt's outcome.

No database here; ``kabar.integrations.dispatch`` decides what to send and records what happened.
Where a POST may go is the egress guard's business (``kabar.egress``): the URL is checked when it
is saved and again by the guarded client at every POST, which connects to the very address it
checked. Redirects are not followed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from dataclasses import dataclass

import httpx

from kabar import __version__, egress

SIGNATURE_HEADER = "X-Kabar-Signature"
TIMESTAMP_HEADER = "X-Kabar-Timestamp"
EVENT_HEADER = "X-Kabar-Event"
DELIVERY_HEADER = "X-Kabar-Delivery"
USER_AGENT = f"Kabar-Webhooks/{__version__}"
ERROR_SNIPPET = 300  # characters of a failing response's body kept as its error
READ_LIMIT = 64 * 1024  # a receiver's answer is read this far at most, then dropped


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


async def post(
    http: httpx.AsyncClient,
    url: str,
    *,
    secret: str,
    event_type: str,
    delivery_id: str,
    body: bytes,
    timeout: float,
) -> Attempt:
    """POST ``body`` signed through ``http`` (an ``egress.client``); success is a 2xx answer within
    ``timeout`` seconds (all included)."""
    started = time.perf_counter()

    def took() -> int:
        return int((time.perf_counter() - started) * 1000)

    try:
        async with asyncio.timeout(timeout):
            headers = signed_headers(secret, event_type=event_type, delivery_id=delivery_id, body=body)
            async with http.stream("POST", url, content=body, headers=headers) as response:
                answer = bytearray()
                async for chunk in response.aiter_bytes():
                    answer += chunk
                    if len(answer) >= READ_LIMIT:
                        break
                status = response.status_code
    except TimeoutError:
        return Attempt(False, None, took(), f"no answer within {timeout:g} s")
    except egress.EgressRefused as exc:
        return Attempt(False, None, took(), f"refused: URL {exc}")
    except httpx.HTTPError as exc:
        return Attempt(False, None, took(), f"{type(exc).__name__}: {exc}"[:ERROR_SNIPPET] or type(exc).__name__)
    if 200 <= status < 300:
        return Attempt(True, status, took(), None)
    text = bytes(answer[:ERROR_SNIPPET]).decode("utf-8", "replace").strip()
    return Attempt(False, status, took(), f"HTTP {status}" + (f": {text}" if text else ""))
