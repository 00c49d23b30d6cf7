"""The channel settings' "send test message": one text, sent synchronously through the
workspace's provider, so an owner sees at once whether the connection works — or the provider's
own error code and title (bad token, unknown number…).

A test message the provider accepted is recorded as an outbound message in the recipient's
conversation (created when needed), sent by the staff member. It reached a real WhatsApp chat, so
the inbox shows it like any other message; its delivery statuses — including a failure that only
arrives later by webhook, such as 131047 outside the 24-hour window — then show as ticks there.
(The provider echoes API sends back anyway; without this record ingest would keep the echo as an
anonymous "external" message once the confirmation window passes.)
A refused test is not recorded: nothing reached the customer.
"""

from __future__ import annotations

from typing import Any

from kabar.auth.scope import Scope
from kabar.channels import providers
from kabar.channels import schemas as s
from kabar.channels import service
from kabar.channels.graph import REFUSED, ProviderError, text_body
from kabar.db.uow import UnitOfWork
from kabar.errors import Problem, invalid
from kabar.events import MESSAGE_UPDATED, payload
from kabar.ingest import repository as ingest_repo
from kabar.ingest.schemas import Content, InboundMessage
from kabar.ingest.service import Applier
from kabar.messages.schemas import message_out
from kabar.phones import InvalidPhone, to_e164

DEFAULT_TEXT = "Tes dari Kabar ✅"
ORIGIN = "channel_test"  # messages.metadata.origin of a recorded test message
# What to check, for the errors owners meet when connecting a number.
_HINTS = {
    190: "The access token is invalid or expired: update it in the channel settings.",
    100: "Check the phone number ID and the recipient's number.",
    131030: "The recipient is not in the allowed list of this test number.",
    131026: "This number cannot receive WhatsApp messages.",
    133010: "The phone number is not registered with the WhatsApp Cloud API.",
}


def provider_problem(error: ProviderError) -> Problem:
    """The provider's answer as a problem: its code and title, never a credential."""
    provider_error: dict[str, Any] = {"code": error.code, "title": error.title}
    if error.details and error.details != error.title:
        provider_error["details"] = error.details
    if error.http_status is not None:
        provider_error["http_status"] = error.http_status
    extra = {"provider_error": provider_error}
    if error.code == REFUSED:  # the saved API base is refused by the egress guard now
        return invalid("api_base_url", f"is not allowed: {error.title}")
    if error.kind == "uncertain":
        return Problem(504, "provider-timeout", "No answer from the WhatsApp provider",
                       "The provider did not answer in time; the message may still arrive.", extra=extra)
    if error.code == "network":
        return Problem(502, "provider-unreachable", "Cannot reach the WhatsApp provider",
                       f"{error.title}. Check the API base URL.", extra=extra)
    hint = _HINTS.get(error.code) if isinstance(error.code, int) else None
    if hint is None and error.http_status in (401, 403):
        hint = "The provider did not accept the credentials: check the API key / access token."
    detail = f"{error.title} (code {error.code})" + (f". {hint}" if hint else "")
    # 502, not the provider's own 401: the caller's Kabar session is fine.
    return Problem(502, "provider-rejected", "The WhatsApp provider refused the message", detail, extra=extra)


async def send_test_message(runtime: Any, ctx: Scope, data: s.ChannelTestIn) -> s.ChannelTestOut:
    ctx.require("channel.manage")
    try:
        to = to_e164(data.to)
    except InvalidPhone as exc:
        raise invalid("to", f"is not a phone number ({exc})") from None
    text = (data.text or "").strip() or DEFAULT_TEXT
    channel = await runtime.db.read(service.load, runtime.cipher, ctx.workspace_id)
    if channel is None:
        raise Problem(409, "channel-not-configured", "WhatsApp is not connected", "Save the channel settings first, then send a test message.")
    try:
        result = await providers.client_for(runtime, channel).send(text_body(to, text))
    except ProviderError as error:
        raise provider_problem(error) from None
    recorded = await runtime.db.transaction(_record, ctx, channel, to, text, result.provider_message_id)
    return s.ChannelTestOut(
        ok=True,
        to=to,
        provider_message_id=result.provider_message_id,
        message_id=recorded.id if recorded is not None else None,
        conversation_id=recorded.conversation_id if recorded is not None else None,
    )


def _record(uow: UnitOfWork, ctx: Scope, channel: service.ChannelConfig, to: str, text: str, wamid: str) -> Any:
    """Store the accepted test message as the business's message in ``to``'s conversation, the way
    ingest stores a message the business sent outside the inbox (contact and conversation created
    when new, statuses that already arrived adopted), then name the staff member who sent it."""
    echo = InboundMessage(
        phone_number_id=channel.phone_number_id,
        provider_message_id=wamid,
        wa_id=to.lstrip("+"),
        content=Content(type="text", text=text),
        direction="outbound",
        origin=ORIGIN,
        timestamp=uow.now,
        status="sent",
    )
    Applier(uow, ctx.workspace_id).apply([echo])
    row = ingest_repo.message_by_provider_id(uow.conn, ctx, wamid, lock=True)
    if row is None:
        return None
    if ctx.user_id and row.sender_id is None:
        row = ingest_repo.update_message(uow.conn, ctx, row.id, {"sender_id": ctx.user_id, "updated_at": uow.now})
        uow.emit(ctx.workspace_id, MESSAGE_UPDATED, payload(message_out(row)), contact_id=row.contact_id)
    return row
