"""Every case in shared/fixtures/meta/*.json, posted with a valid signature to Meta's endpoint and
(as Kapso forwards it) to Kapso's: 200, and the stored result each case should produce."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from kabar.channels.fake import payloads as p
from kabar.db import tables as t
from kabar.db.types import utcnow
from kabar.ids import new_id
from tests.channels.support import configure, count, message, post_kapso, post_meta, rows

FIXTURES = Path(__file__).parent / "fixtures" / "meta"
CUSTOMER = "+972987654321"


def load_cases() -> list[tuple[str, str]]:
    cases = []
    for path in sorted(FIXTURES.glob("*.json")):
        for name in json.loads(path.read_text()):
            cases.append((path.stem, name))
    return cases


def fixture(file: str, case: str, pnid: str) -> dict[str, Any]:
    doc = copy.deepcopy(json.loads((FIXTURES / f"{file}.json").read_text())[case])
    for entry in doc.get("entry", []):
        for change in entry.get("changes", []):
            metadata = change.get("value", {}).get("metadata")
            if metadata is not None:
                metadata["phone_number_id"] = pnid  # tests share a database: each tenant has its own number
    return doc


class Ctx:
    """One fixture case against one fresh workspace."""

    def __init__(self, client: Any, tenant: Any, channel: Any, via: str):
        self.client, self.tenant, self.channel, self.via = client, tenant, channel, via
        self.ws = tenant.ws

    async def post(self, doc: dict[str, Any], key: str | None = None) -> Any:
        if self.via == "meta":
            response = await post_meta(self.client, self.channel, doc)
        else:
            # Kapso forwards Meta bodies with X-Idempotency-Key = SHA-256 of the payload.
            key = key or hashlib.sha256(p.encode(doc)).hexdigest()
            response = await post_kapso(self.client, self.channel, doc, event="", key=key)
        assert response.status_code == 200, response.text
        return response

    async def inbound(self, wamid: str, text: str = "earlier", phone: str = CUSTOMER, mtype: str = "text") -> None:
        """A customer message already stored (a target for reactions, edits, revokes, replies)."""
        body: dict[str, Any] = {"from": phone.lstrip("+"), "id": wamid, "timestamp": "1697040000", "type": mtype}
        body[mtype] = {"body": text} if mtype == "text" else {"id": "555", "mime_type": "image/jpeg", "caption": text}
        await self.post(p.meta_envelope(self.channel.pnid, {"contacts": [{"profile": {"name": "Test Name"}, "wa_id": phone.lstrip("+")}], "messages": [body]}))

    async def outbound(self, wamid: str, status: str = "pending", phone: str = CUSTOMER) -> None:
        """Our own sent message with this provider id (its statuses are what the case reports)."""
        await self.inbound("wamid.seed-" + wamid[-6:], phone=phone)
        conversation = (await rows(self.client, t.conversations, self.ws))[0]
        values = {"id": new_id(), "workspace_id": self.ws, "conversation_id": conversation.id, "contact_id": conversation.contact_id,
                  "direction": "outbound", "sender_type": "user", "type": "text", "text": "Pesanan Anda sudah dikirim",
                  "status": status, "provider_message_id": wamid, "reactions": [], "metadata": {}, "created_at": utcnow(), "updated_at": utcnow()}
        await self.client.runtime.db.transaction(lambda uow: uow.conn.execute(insert(t.messages).values(**values)))

    async def msg(self, wamid: str) -> Any:
        found = await message(self.client, self.ws, wamid)
        assert found is not None, f"no message {wamid}"
        return found

    async def only_message(self) -> Any:
        found = await rows(self.client, t.messages, self.ws)
        assert len(found) == 1, [(m.type, m.text) for m in found]
        return found[0]

    async def receipts(self) -> list[Any]:
        return await rows(self.client, t.webhook_receipts, self.ws)

    async def contact(self, phone: str = CUSTOMER) -> Any:
        return (await rows(self.client, t.contacts, self.ws, t.contacts.c.phone_e164 == phone))[0]

    async def conversation(self) -> Any:
        return (await rows(self.client, t.conversations, self.ws))[0]


Check = Callable[[Ctx, dict[str, Any]], Awaitable[None]]
SETUP: dict[tuple[str, str], Callable[[Ctx], Awaitable[None]]] = {}
EXPECT: dict[tuple[str, str], Check] = {}


def expect(*keys: tuple[str, str], setup: Callable[[Ctx], Awaitable[None]] | None = None) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        for key in keys:
            EXPECT[key] = fn
            if setup is not None:
                SETUP[key] = setup
        return fn

    return register


# -- message.json -----------------------------------------------------------------------------


@expect(("message", "text"))
async def _text(c: Ctx, doc: dict[str, Any]) -> None:
    m = await c.only_message()
    assert (m.type, m.text, m.direction, m.status, m.sender_type) == ("text", "Body Text", "inbound", "received", "contact")
    contact = await c.contact()
    assert contact.profile_name == "Test Name" and contact.source == "whatsapp"
    assert contact.whatsapp_user_id == "US.13491208655302741918"
    conversation = await c.conversation()
    assert (conversation.unread_count, conversation.last_message_preview, conversation.status) == (1, "Body Text", "open")
    assert conversation.last_inbound_at is not None
    assert [r.status for r in await c.receipts()] == ["applied"]


def _media_check(mtype: str, **fields: Any) -> Check:
    async def check(c: Ctx, doc: dict[str, Any]) -> None:
        m = await c.only_message()
        assert m.type == mtype
        for key, value in fields.items():
            assert m.media.get(key) == value, (key, m.media)
        assert m.text == fields.get("caption")
        jobs = await c.client.runtime.db.read(
            lambda conn: conn.execute(t.jobs.select().where(t.jobs.c.workspace_id == c.ws, t.jobs.c.kind == "media.download")).all()
        )
        assert [j.payload for j in jobs] == [{"message_id": m.id}]

    return check


EXPECT[("message", "image")] = _media_check("image", provider_media_id="65463453", mime_type="image/jpeg", sha256="4654+8g=")
EXPECT[("message", "media_with_url")] = _media_check(
    "image", provider_media_id="65463453",
    url="https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=65463453&source=webhook&ext=487r9re&hash=heiwchueowbcew-dnedcw",
)
EXPECT[("message", "video")] = _media_check("video", provider_media_id="765756756", caption="caption", mime_type="video/mp4")
EXPECT[("message", "document")] = _media_check("document", filename="filename.pdf", caption="caption", mime_type="application/pdf")
EXPECT[("message", "audio")] = _media_check("audio", voice=False, mime_type="audio/ogg; codecs=opus")
EXPECT[("message", "voice")] = _media_check("audio", voice=True)
EXPECT[("message", "static_sticker")] = _media_check("sticker", animated=False, mime_type="image/webp")
EXPECT[("message", "animated_sticker")] = _media_check("sticker", animated=True)


async def _reaction_target(c: Ctx) -> None:
    await c.inbound("wamid.yzxyzx=")


@expect(("message", "reaction"), setup=_reaction_target)
async def _reaction(c: Ctx, doc: dict[str, Any]) -> None:
    target = await c.msg("wamid.yzxyzx=")
    assert [(r["emoji"], r["by"]) for r in target.reactions] == [("😮", "contact")]
    assert await count(c.client, t.messages, c.ws) == 1  # a reaction is not a chat bubble


async def _reacted_target(c: Ctx) -> None:
    await c.inbound("wamid.yzxyzx=")
    await c.post(fixture("message", "reaction", c.channel.pnid))
    assert (await c.msg("wamid.yzxyzx=")).reactions


@expect(("message", "unreaction_empty"), ("message", "unreaction_no_emoji"), setup=_reacted_target)
async def _unreaction(c: Ctx, doc: dict[str, Any]) -> None:
    assert (await c.msg("wamid.yzxyzx=")).reactions == []


@expect(("message", "current_location"))
async def _current_location(c: Ctx, doc: dict[str, Any]) -> None:
    m = await c.only_message()
    assert m.type == "location" and m.text is None
    assert (m.metadata["location"]["latitude"], m.metadata["location"]["longitude"]) == (12.25089, 43.90539)
    assert m.metadata["forwarded"] is True


@expect(("message", "chosen_location"))
async def _chosen_location(c: Ctx, doc: dict[str, Any]) -> None:
    m = await c.only_message()
    assert (m.type, m.text) == ("location", "Facebook HQ")
    assert m.metadata["location"]["address"] == "1 Hacker Way, Menlo Park, CA 94025"
    assert (await c.conversation()).last_message_preview == "[location] Facebook HQ"


@expect(("message", "contacts"))
async def _contacts(c: Ctx, doc: dict[str, Any]) -> None:
    m = await c.only_message()
    assert (m.type, m.text) == ("contacts", "Chandler Bing, Monica, Rachel Green")
    assert [card["phones"][0]["phone"] for card in m.metadata["contacts"]] == ["+1 555-555-5555", "+1 666-666-6666", "+1 777-777-7777"]


@expect(("message", "order"))
async def _order(c: Ctx, doc: dict[str, Any]) -> None:
    m = await c.only_message()
    assert m.type == "order" and m.text is None
    assert [i["product_retailer_id"] for i in m.metadata["order"]["product_items"]] == ["HAMBURGER", "FRENCH_FRIES", "SODA"]


@expect(("message", "unsupported"))
async def _unsupported(c: Ctx, doc: dict[str, Any]) -> None:
    m = await c.only_message()
    assert m.type == "unsupported" and m.metadata["errors"][0]["code"] == 131051
    assert (await c.conversation()).last_message_preview == "[unsupported: unknown]"


@expect(("message", "unsupported_with_type"))
async def _unsupported_poll(c: Ctx, doc: dict[str, Any]) -> None:
    m = await c.only_message()
    assert (m.type, m.metadata["unsupported_type"]) == ("unsupported", "pool")
    assert (await c.conversation()).last_message_preview == "[unsupported: pool]"


async def _quoted(c: Ctx) -> None:
    await c.outbound("wamid.xyzxyz==", status="read")


@expect(("message", "reply"), setup=_quoted)
async def _reply(c: Ctx, doc: dict[str, Any]) -> None:
    m = await c.msg("wamid.xyzxyz")
    quoted = await c.msg("wamid.xyzxyz==")
    assert (m.text, m.reply_to_provider_id, m.reply_to_id) == ("replied text", "wamid.xyzxyz==", quoted.id)


@expect(("message", "forwarded"))
async def _forwarded(c: Ctx, doc: dict[str, Any]) -> None:
    m = await c.only_message()
    assert (m.text, m.metadata.get("forwarded"), m.reply_to_provider_id) == ("forwarded text", True, None)


@expect(("message", "forwarded_many_times"))
async def _forwarded_many(c: Ctx, doc: dict[str, Any]) -> None:
    m = await c.only_message()
    assert (m.text, m.metadata.get("frequently_forwarded")) == ("text forwarded many times", True)


@expect(("message", "interactive_message_with_err"))
async def _interactive_error(c: Ctx, doc: dict[str, Any]) -> None:
    m = await c.only_message()
    assert (m.type, m.text, m.reply_to_provider_id) == ("interactive", None, "wamid.gvwegfretge==")
    assert [r.status for r in await c.receipts()] == ["applied"]


@expect(("message", "referral"))
async def _referral(c: Ctx, doc: dict[str, Any]) -> None:
    m = await c.only_message()
    assert m.text == "BODY" and m.metadata["referral"]["source_id"] == "ADID" and m.metadata["referral"]["ctwa_clid"] == "CTWA_CLID"


# -- message_status.json ----------------------------------------------------------------------


async def _our_message(c: Ctx) -> None:
    await c.outbound("wamid.xyzxyz")


def _status_check(expected: str, reported: str | None = None) -> Check:
    async def check(c: Ctx, doc: dict[str, Any]) -> None:
        m = await c.msg("wamid.xyzxyz")
        assert m.status == expected
        history = await rows(c.client, t.message_status_history, c.ws, t.message_status_history.c.provider_message_id == "wamid.xyzxyz")
        assert [(h.status, h.message_id) for h in history] == [(reported or expected, m.id)]

    return check


for _name, _status in (("sent", "sent"), ("delivered", "delivered"), ("read", "read"), ("with_tracker", "sent")):
    EXPECT[("message_status", _name)] = _status_check(_status)
    SETUP[("message_status", _name)] = _our_message
EXPECT[("message_status", "played")] = _status_check("read", "played")
SETUP[("message_status", "played")] = _our_message


@expect(("message_status", "failed"), setup=_our_message)
async def _failed(c: Ctx, doc: dict[str, Any]) -> None:
    m = await c.msg("wamid.xyzxyz")
    assert m.status == "failed"
    assert m.error["code"] == 130472 and m.error["title"] == "User's number is part of an experiment"


@expect(("message_status", "group"))
async def _group_status(c: Ctx, doc: dict[str, Any]) -> None:
    # A status for a message we do not have: kept, waiting for its message.
    history = await rows(c.client, t.message_status_history, c.ws)
    assert [(h.provider_message_id, h.status, h.message_id) for h in history] == [("<WHATSAPP_MESSAGE_ID>", "read", None)]
    assert await count(c.client, t.messages, c.ws) == 0


# -- buttons and lists ------------------------------------------------------------------------


@expect(("callback_button", "button"))
async def _button_reply(c: Ctx, doc: dict[str, Any]) -> None:
    m = await c.only_message()
    assert (m.type, m.text) == ("interactive", "title")
    assert m.metadata["interactive"] == {"type": "button_reply", "id": "callback_data", "title": "title"}


@expect(("callback_button", "quick_reply"), ("callback_button", "quick_reply_without_context"))
async def _quick_reply(c: Ctx, doc: dict[str, Any]) -> None:
    m = await c.only_message()
    assert (m.type, m.text, m.metadata["button"]["payload"]) == ("button", "title", "callback_data")


@expect(("callback_selection", "callback"))
async def _list_reply(c: Ctx, doc: dict[str, Any]) -> None:
    m = await c.only_message()
    assert (m.type, m.text, m.metadata["interactive"]) == ("interactive", "title", {"type": "list_reply", "id": "callback_data", "title": "title"})


@expect(("callback_selection", "description"))
async def _list_reply_description(c: Ctx, doc: dict[str, Any]) -> None:
    m = await c.only_message()
    assert m.metadata["interactive"]["description"] == "description"


# -- edits, revokes, echoes -------------------------------------------------------------------

EDITED = "wamid.HBgLMTQxMjU1NTA4MjkVAgASGBQzQUNCNjk5RDUwNUZGMUZEM0VBRAA="


async def _edit_target(c: Ctx) -> None:
    await c.inbound(EDITED, text="Old caption", phone="+16505551234", mtype="image")


@expect(("edited_message", "image"), setup=_edit_target)
async def _edited(c: Ctx, doc: dict[str, Any]) -> None:
    m = await c.msg(EDITED)
    assert (m.text, m.media["caption"]) == ("Updated image caption", "Updated image caption")
    assert m.edited_at is not None and m.metadata["edits"][0]["text"] == "Old caption"
    assert await count(c.client, t.messages, c.ws) == 1


async def _revoke_target(c: Ctx) -> None:
    await c.inbound("<ORIGINAL_WHATSAPP_MESSAGE_ID>", text="pesan yang dihapus")


@expect(("deleted_message", "revoke"), setup=_revoke_target)
async def _revoked(c: Ctx, doc: dict[str, Any]) -> None:
    m = await c.msg("<ORIGINAL_WHATSAPP_MESSAGE_ID>")
    assert m.deleted_at is not None and m.text is None
    assert m.metadata["deleted"]["text"] == "pesan yang dihapus"


@expect(("outgoing_message", "text"))
async def _echo(c: Ctx, doc: dict[str, Any]) -> None:
    m = await c.only_message()
    assert (m.direction, m.sender_type, m.text, m.status, m.metadata["origin"]) == ("outbound", "user", "Test message", "sent", "business_app")
    assert (await c.contact()).phone_e164 == CUSTOMER
    assert (await c.conversation()).unread_count == 0


async def _echo_target(c: Ctx) -> None:
    await c.post(p.meta_envelope(c.channel.pnid, {"message_echoes": [
        {"from": "972123456789", "to": "972987654321", "id": "wamid.zzzzzz", "timestamp": "1697044900", "type": "text", "text": {"body": "Halo dari HP"}},
    ]}, field="smb_message_echoes"))


@expect(("outgoing_message", "delete"), setup=_echo_target)
async def _echo_revoke(c: Ctx, doc: dict[str, Any]) -> None:
    m = await c.msg("wamid.zzzzzz")
    assert m.deleted_at is not None and m.metadata["deleted"]["text"] == "Halo dari HP"


@expect(("outgoing_message", "edit"), setup=_echo_target)
async def _echo_edit(c: Ctx, doc: dict[str, Any]) -> None:
    m = await c.msg("wamid.zzzzzz")
    assert m.text == "Text was edited" and m.metadata["edits"][0]["text"] == "Halo dari HP"


# -- system, account, templates, preferences --------------------------------------------------


async def _existing_customer(c: Ctx) -> None:
    await c.inbound("wamid.before-change")


@expect(("system", "phone_number_change"), setup=_existing_customer)
async def _number_changed(c: Ctx, doc: dict[str, Any]) -> None:
    system = await c.msg("wamid.xyzxyz==")
    assert (system.type, system.text) == ("system", "User A changed from 972987654321 to 972912345678")
    contacts = await rows(c.client, t.contacts, c.ws)
    assert [(k.phone_e164, k.attributes["previous_phones"]) for k in contacts] == [("+972912345678", [CUSTOMER])]
    assert system.contact_id == contacts[0].id
    assert (await c.conversation()).unread_count == 1  # the system notice is not a customer message


@expect(("system", "identity_change"))
async def _identity_changed(c: Ctx, doc: dict[str, Any]) -> None:
    m = await c.only_message()
    assert (m.type, m.text) == ("system", "User identity changed")


async def _preference_contact(c: Ctx) -> None:
    await c.inbound("wamid.pref", phone="+16505551234")


@expect(("user_marketing_preferences", "resume"), setup=_preference_contact)
async def _resume(c: Ctx, doc: dict[str, Any]) -> None:
    assert (await c.contact("+16505551234")).attributes["whatsapp_marketing_messages"] == "resume"


@expect(("user_marketing_preferences", "signup"), setup=_preference_contact)
async def _signup(c: Ctx, doc: dict[str, Any]) -> None:
    assert (await c.contact("+16505551234")).attributes["whatsapp_marketing_messages"] == "signup"


async def _unrouted(c: Ctx, doc: dict[str, Any]) -> None:
    """Account and template events name no phone number: acknowledged and kept, nothing applied."""
    digest = hashlib.sha256(p.encode(doc)).hexdigest()
    r = t.webhook_receipts
    stored = await c.client.runtime.db.read(
        lambda conn: conn.execute(r.select().where(r.c.provider == c.via, r.c.receipt_key.in_([digest, "sha256:" + digest]))).all()
    )
    assert [(r.workspace_id, r.status) for r in stored] == [("", "unrouted")]
    assert await count(c.client, t.messages, c.ws) == 0


for _file in ("account_update", "template_status_update"):
    for _case in json.loads((FIXTURES / f"{_file}.json").read_text()):
        EXPECT[(_file, _case)] = _unrouted


CASES = load_cases()


def test_every_fixture_case_has_an_expectation() -> None:
    assert len(CASES) >= 50
    assert sorted(set(CASES) - set(EXPECT)) == []


@pytest.mark.parametrize("via", ["meta", "kapso"])
@pytest.mark.parametrize(("file", "case"), CASES, ids=[f"{f}:{c}" for f, c in CASES])
async def test_fixture(client: Any, workspace: Any, via: str, file: str, case: str) -> None:
    tenant = workspace
    channel = await configure(tenant, "meta" if via == "meta" else "kapso")
    ctx = Ctx(client, tenant, channel, via)
    if (file, case) in SETUP:
        await SETUP[(file, case)](ctx)
    doc = fixture(file, case, channel.pnid)
    response = await ctx.post(doc)
    assert response.json()["status"] in ("ok", "unrouted")
    await EXPECT[(file, case)](ctx, doc)
    # The same delivery again changes nothing (receipt-level dedupe).
    before = await count(client, t.events, tenant.ws)
    await ctx.post(doc)
    assert await count(client, t.events, tenant.ws) == before
    if via == "kapso":
        # Re-delivered under another key (Kapso's batch fallback): still no second effect.
        await ctx.post(doc, key=f"other-{case}")
        assert await count(client, t.events, tenant.ws) == before
