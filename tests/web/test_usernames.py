"""A customer who uses a WhatsApp username and hides their number: the inbox list, the thread
header, the contact panel and the contacts list show their ``@username``, and a reply reaches them
(the fake provider is addressed by their business-scoped user id). Before: their message was
dropped, so none of this appeared at all."""

from __future__ import annotations

import secrets

import httpx
from playwright.sync_api import Page, expect

from kabar.channels.fake import payloads
from tests.web.conftest import WebEnv, eventually


def customer_with_username_says(web: WebEnv, user_id: str, username: str, text: str) -> None:
    doc = payloads.kapso_received(pnid=web.pnid, phone=None, user_id=user_id, username=username, text=text)
    raw = payloads.encode(doc)
    headers = payloads.kapso_headers(raw, web.webhook_secret, "whatsapp.message.received")
    response = httpx.post(web.url + "/webhooks/kapso", content=raw, headers=headers, timeout=30)
    assert response.status_code == 200, response.text


def test_username_only_customer_is_shown_and_answered(owner_page: Page, web: WebEnv) -> None:
    page = owner_page
    handle = "pembeli_" + secrets.token_hex(3)
    user_id = "ID." + str(10**19 + secrets.randbelow(10**19))
    customer_with_username_says(web, user_id, "@" + handle, "Kak, ready size 40?")
    found = web.api("GET", f"/v1/workspaces/{web.ws}/conversations", params={"q": "@" + handle}).json()["data"]
    [conversation] = found
    assert (conversation["contact"]["phone"], conversation["contact"]["username"]) == (None, handle)

    # The inbox list (searched by the handle) and the thread header.
    page.goto(f"{web.url}/w/{web.slug}/inbox")
    page.get_by_label("Search").fill("@" + handle)
    row = page.locator("#conv-list li.conv-item").filter(has_text=f"@{handle}")
    expect(row).to_have_count(1)
    row.locator("a").click()
    header = page.locator(".thread-head")
    expect(header.locator("[data-field=name]")).to_have_text(f"@{handle}")
    expect(header.locator("[data-field=phone]")).to_have_text(f"@{handle}")
    expect(page.locator("#message-list li.msg.in")).to_have_count(1)

    # The contact panel.
    header.get_by_role("button", name="Show contact details").click()
    panel = page.locator("#contact-panel")
    expect(panel.locator("[data-field=phone]")).to_have_text(f"@{handle}")

    # A reply goes out to the business-scoped user id.
    page.get_by_label("Message", exact=True).fill("Ready kak")
    page.get_by_role("button", name="Send").click()
    eventually(lambda: any(m["recipient"] == user_id and m["body"].get("text", {}).get("body") == "Ready kak" for m in web.fake.sent),
               "the reply reached the fake provider addressed by the user id")

    # The contacts list.
    page.goto(f"{web.url}/w/{web.slug}/contacts")
    page.get_by_label("Search").fill("@" + handle)
    listed = page.locator("#contacts-table tbody tr").filter(has_text=f"@{handle}")
    expect(listed).to_have_count(1)
