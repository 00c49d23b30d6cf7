"""The Cloud API wire format, spoken to Kapso's Meta proxy and to Meta's Graph API alike
(request bodies, responses and error envelopes are the same; only the base URL and the auth
header differ, see ``kabar.channels.providers``).

Errors are classified for the sender (wire-formats §2.4, §4.4):
- ``retry``: 429, throttling codes, 5xx, Kapso's 409 "in flight", and failures to connect —
  the provider did not take the message; send again later (honouring ``Retry-After``);
- ``uncertain``: the request went out but no answer came back (read timeout, dropped
  connection) — the provider may have taken it; never resend blindly (see ``kabar.channels.tasks``);
- ``permanent``: everything else (131047 outside the window, 131026 undeliverable, 100 invalid
  parameter, template errors, bad credentials…) — the message fails with the code and title.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from kabar import egress
from kabar.db.types import utcnow

THROTTLED = frozenset({4, 80007, 130429, 131048, 131056})
TRANSIENT = frozenset({1, 2, 131000, 131016, 131057, 133004})
MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")
REFUSED = "url_refused"  # the code of a ProviderError for a URL the egress guard refused
_CODE_PREFIX = re.compile(r"^\(#\d+\)\s*")


class ProviderError(Exception):
    def __init__(self, kind: str, code: int | str, title: str, details: str | None = None, *,
                 retry_after: float | None = None, http_status: int | None = None):
        super().__init__(f"{code}: {title}")
        self.kind = kind  # retry | uncertain | permanent
        self.code = code
        self.title = title
        self.details = details
        self.retry_after = retry_after
        self.http_status = http_status

    def as_error(self) -> dict[str, Any]:
        """The ``messages.error`` value: ``{code, title}`` plus details when the provider gave them."""
        out: dict[str, Any] = {"code": self.code, "title": self.title}
        if self.details:
            out["details"] = self.details
        return out


@dataclass(frozen=True, slots=True)
class SendResult:
    provider_message_id: str
    wa_id: str | None = None


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - utcnow()).total_seconds())
    except (TypeError, ValueError):
        return None


def classify(response: httpx.Response) -> ProviderError:
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    details = None
    if isinstance(error, dict):  # Meta's envelope, passed through by Kapso
        code: int | str = error.get("code") if isinstance(error.get("code"), int) else status
        title = _CODE_PREFIX.sub("", str(error.get("message") or error.get("type") or response.reason_phrase))
        details = (error.get("error_data") or {}).get("details") if isinstance(error.get("error_data"), dict) else None
    elif isinstance(error, str):  # Kapso's own flat errors
        code = body.get("code") or status
        title, details = error, body.get("message")
    else:
        code, title = status, response.reason_phrase or f"HTTP {status}"
    retry_after = retry_after_seconds(response.headers.get("retry-after"))
    if status == 429 or code in THROTTLED:
        kind = "retry"
    elif status == 409:  # Kapso: "another message in-flight for this conversation"
        kind, retry_after = "retry", retry_after if retry_after is not None else 2.0
    elif status >= 500 or code in TRANSIENT:
        kind = "retry"
    else:
        kind = "permanent"
    return ProviderError(kind, code, title, details, retry_after=retry_after, http_status=status)


def recipient_of(contact: Any) -> dict[str, str]:
    """Where a send to this contact goes: its phone number (``to``) when known, otherwise its
    business-scoped user id (``recipient``, accepted by Meta and Kapso since the WhatsApp
    usernames rollout; when both are sent ``to`` wins, so only one is)."""
    if contact.phone_e164:
        return {"to": contact.phone_e164}
    return {"recipient": contact.whatsapp_user_id}


def _envelope(to: str | dict[str, str], type: str) -> dict[str, Any]:
    address = to if isinstance(to, dict) else {"to": to}
    return {"messaging_product": "whatsapp", "recipient_type": "individual", **address, "type": type}


def _text_part(text: str) -> dict[str, Any]:
    return {"body": text, "preview_url": "http://" in text or "https://" in text}


def text_body(to: str, text: str) -> dict[str, Any]:
    """A plain text message (the channel settings' test message)."""
    return {**_envelope(to, "text"), "text": _text_part(text)}


def reaction_body(to: str | dict[str, str], target: str, emoji: str) -> dict[str, Any]:
    """React to the message with provider id ``target``; an empty emoji removes the reaction."""
    return {**_envelope(to, "reaction"), "reaction": {"message_id": target, "emoji": emoji}}


def message_body(message: Any, to: str | dict[str, str], *, reply_to: str | None = None, media_ref: dict[str, str] | None = None) -> dict[str, Any]:
    """The ``POST /{phone_number_id}/messages`` body for a stored outbound message row."""
    body = _envelope(to, message.type)
    if message.type == "text":
        body["text"] = _text_part(message.text or "")
    elif message.type in MEDIA_TYPES:
        media = dict(message.media or {})
        part: dict[str, Any] = dict(media_ref or {})
        if media.get("caption") and message.type not in ("audio", "sticker"):
            part["caption"] = media["caption"]
        if message.type == "document" and media.get("filename"):
            part["filename"] = media["filename"]
        body[message.type] = part
    elif message.type == "template":
        template = dict((message.metadata or {}).get("template") or {})
        language = template.get("language")
        body["template"] = {
            "name": template.get("name"),
            "language": language if isinstance(language, dict) else {"code": language or "id"},
            **({"components": template["components"]} if template.get("components") else {}),
        }
    else:
        raise ProviderError("permanent", "unsupported_type", f"Kabar cannot send {message.type!r} messages")
    if reply_to:
        body["context"] = {"message_id": reply_to}
    # Echoed back in status webhooks: links a status that beats our API response to the message.
    body["biz_opaque_callback_data"] = message.id
    return body


class GraphClient:
    """Calls to one channel's provider through an ``egress.client``. The credentials (``headers``)
    go to the API base and, for media downloads, only to a URL ``trusted`` accepts (the
    provider's own hosts, ``kabar.channels.providers``)."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, headers: dict[str, str], phone_number_id: str, *,
                 timeout: float, media_query: dict[str, str] | None = None,
                 trusted: Callable[[httpx.URL], bool] = lambda _: False):
        self.http = http
        self.base = base_url.rstrip("/")
        self.headers = headers
        self.phone_number_id = phone_number_id
        self.timeout = timeout
        self.media_query = media_query or {}
        self.trusted = trusted

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self.http.request(method, url, headers=self.headers, timeout=self.timeout, **kwargs)
        except (egress.EgressRefused, httpx.InvalidURL) as exc:
            raise refused(exc) from exc
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.WriteTimeout, httpx.WriteError,
                httpx.UnsupportedProtocol) as exc:
            # The request never reached the provider whole: nothing can have been accepted.
            raise ProviderError("retry", "network", f"could not reach the provider ({type(exc).__name__}: {exc})"[:300]) from exc
        except httpx.TransportError as exc:
            # Sent, but the answer was lost (read timeout, reset): the provider may have accepted it.
            raise ProviderError("uncertain", "no_response", f"no response from the provider ({type(exc).__name__})") from exc
        if response.status_code >= 400:
            raise classify(response)
        return response

    async def send(self, body: dict[str, Any]) -> SendResult:
        response = await self._request("POST", f"{self.base}/{self.phone_number_id}/messages", json=body)
        try:
            data = response.json()
            message_id = data["messages"][0]["id"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            # A 2xx without a message id: it may have been accepted; treat like a lost answer.
            raise ProviderError("uncertain", "bad_response", "the provider's answer has no message id") from exc
        contacts = data.get("contacts") or [{}]
        return SendResult(str(message_id), (contacts[0] or {}).get("wa_id"))

    async def mark_read(self, provider_message_id: str, *, typing: bool = False) -> None:
        """Blue ticks up to this message; with ``typing`` the customer also sees "typing…" (until
        the next message, or about 25 s)."""
        body: dict[str, Any] = {"messaging_product": "whatsapp", "status": "read", "message_id": provider_message_id}
        if typing:
            body["typing_indicator"] = {"type": "text"}
        await self._request("POST", f"{self.base}/{self.phone_number_id}/messages", json=body)

    async def upload_media(self, content: bytes, mime_type: str, filename: str) -> str:
        response = await self._request(
            "POST",
            f"{self.base}/{self.phone_number_id}/media",
            data={"messaging_product": "whatsapp", "type": mime_type},
            files={"file": (filename, content, mime_type)},
        )
        try:
            return str(response.json()["id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderError("retry", "bad_response", "the media upload answer has no id") from exc

    async def media_info(self, media_id: str) -> dict[str, Any]:
        """``{url, mime_type, sha256, file_size}``: Meta's URL is valid for five minutes."""
        response = await self._request("GET", f"{self.base}/{media_id}", params=self.media_query)
        return response.json()

    @asynccontextmanager
    async def download(self, url: str) -> AsyncIterator[httpx.Response]:
        """GET a media file, following redirects hop by hop through the guard; the credentials go
        only to the provider's own hosts."""
        try:
            async with egress.stream_get(self.http, url, credentials=self.headers, trusted=self.trusted, timeout=self.timeout) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise classify(response)
                yield response
        except (egress.EgressRefused, httpx.InvalidURL) as exc:
            raise refused(exc) from exc
        except httpx.TransportError as exc:
            raise ProviderError("retry", "network", f"media download failed ({type(exc).__name__})") from exc


def refused(exc: Exception) -> ProviderError:
    """The egress guard refused the URL: permanent, nothing was sent."""
    return ProviderError("permanent", REFUSED, f"URL refused: {exc}")

