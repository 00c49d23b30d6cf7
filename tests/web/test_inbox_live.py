"""The inbox's main loop in a real browser: a customer writes, the message appears live in the
list and in the open thread, staff replies, and the ticks follow the provider's statuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, expect

from tests.web.conftest import PageErrors, WebEnv, eventually, login, new_page, new_phone, start_web_env, stop_extra

RECORD_STATUSES = """
() => {
  window.__statuses = [];
  const seen = (el) => {
    if (el.matches && el.matches('li.msg.out')) window.__statuses.push(el.dataset.id + ':' + el.dataset.status);
  };
  new MutationObserver((records) => {
    for (const r of records) for (const n of r.addedNodes) seen(n);
  }).observe(document.getElementById('message-list'), { childList: true, subtree: true });
}
"""


def live_conversation_flow(page: Page, web: WebEnv) -> None:
    frames: list[str] = []  # what the realtime socket received, for the failure message
    page.on("websocket", lambda socket: socket.on("framereceived", lambda frame: frames.append(str(frame)[:200])))
    try:
        _live_conversation_flow(page, web)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n-- realtime frames received:\n" + "\n".join(frames[-30:])) from None


def _live_conversation_flow(page: Page, web: WebEnv) -> None:
    phone = new_phone()
    page.goto(f"{web.url}/w/{web.slug}/inbox")
    rows = page.locator("#conv-list li.conv-item")
    expect(rows.first).to_be_visible()
    unread_before = page.locator("#unread-total").text_content() or "0"
    expect(page.locator("body")).to_have_attribute("data-live", "live")  # subscribed to the workspace's events

    # 1. A new customer writes: the conversation appears at the top of the list, unread, no reload.
    page.evaluate("window.__sameDocument = true")
    web.customer_says(phone, "Halo kak, saya mau tanya program S2", name="Sekar Ayu")
    first = rows.first
    expect(first).to_contain_text("Sekar Ayu")
    expect(first).to_contain_text("Halo kak, saya mau tanya program S2")
    expect(first.locator(".badge")).to_have_text("1")
    expect(page.locator("#unread-total")).not_to_have_text(unread_before)

    # 2. Open it: history shows, the badge clears (and stays cleared on the server).
    first.locator("a").click()
    thread = page.locator("#message-list")
    expect(thread.locator("li.msg.in")).to_have_count(1)
    expect(thread).to_contain_text("Halo kak, saya mau tanya program S2")
    expect(first.locator(".badge")).to_have_count(0)
    eventually(lambda: web.conversation_of(phone.lstrip("+"))["unread_count"] == 0, "the read reaches the server")

    # 3. The customer writes again: it appears in the open thread and the list, still no reload.
    web.customer_says(phone, "Biayanya berapa ya?")
    expect(thread.locator("li.msg.in")).to_have_count(2)
    expect(thread.locator("li.msg.in").last).to_contain_text("Biayanya berapa ya?")
    expect(rows.first).to_contain_text("Biayanya berapa ya?")

    # 4. Reply: the bubble shows at once (pending), then sent → delivered → read from the provider.
    page.evaluate(RECORD_STATUSES)
    page.get_by_label("Message", exact=True).fill("Halo Sekar! Biayanya mulai Rp 350 juta per tahun.")
    page.get_by_role("button", name="Send").click()
    mine = thread.locator("li.msg.out").filter(has_text="Halo Sekar! Biayanya mulai")
    expect(mine).to_have_count(1)
    expect(mine).to_have_attribute("data-status", "read", timeout=20_000)
    expect(mine.locator(".tick")).to_have_attribute("aria-label", "Read")
    statuses = [s.split(":", 1)[1] for s in page.evaluate("window.__statuses")]
    order = [s for s in statuses if s in ("pending", "sent", "delivered", "read")]
    assert order and order[0] == "pending", statuses
    assert [s for i, s in enumerate(order) if i == 0 or s != order[i - 1]] == ["pending", "sent", "delivered", "read"], page.evaluate("window.__statuses")
    assert page.evaluate("window.__sameDocument") is True  # never reloaded
    # What the customer got is what we typed.
    assert any(m["body"].get("text", {}).get("body", "").startswith("Halo Sekar!") for m in web.fake.sent)


def test_customer_message_live_and_reply_ticks(browser: Browser, web: WebEnv, page_errors: PageErrors) -> None:
    page = new_page(browser, page_errors)
    login(page, web.url)
    live_conversation_flow(page, web)
    page.context.close()
    page_errors.check()


def test_customer_message_live_and_reply_ticks_on_postgresql(browser: Browser, start_server, tmp_path: Path, page_errors: PageErrors) -> None:
    web, extra = start_web_env("postgres", tmp_path, start_server)
    try:
        page = new_page(browser, page_errors)
        login(page, web.url)
        live_conversation_flow(page, web)
        page.context.close()
        page_errors.check()
    finally:
        web.fake.stop()
        stop_extra(extra)


def test_outside_window_offers_templates(browser: Browser, web: WebEnv, page_errors: PageErrors) -> None:
    """A conversation whose customer last wrote over 24 h ago: free text is refused with the
    reason, and the template picker sends a template instead."""
    now = datetime.now(UTC)
    page_of = web.api("GET", f"/v1/workspaces/{web.ws}/conversations", params={"limit": 200}).json()["data"]
    old = [c for c in page_of if c["last_inbound_at"] and now - datetime.fromisoformat(c["last_inbound_at"]) > timedelta(hours=25)]
    assert old, "the demo data has conversations whose customer wrote days ago"
    listed = old[:1]
    page = new_page(browser, page_errors)
    login(page, web.url)
    page.goto(f"{web.url}/w/{web.slug}/inbox?c={listed[0]['id']}")
    expect(page.locator("#window-banner")).to_be_visible()
    page.get_by_label("Message", exact=True).fill("Halo, masih tertarik?")
    page.get_by_role("button", name="Send").click()
    failed = page.locator("li.msg.out[data-status=failed]")
    expect(failed).to_contain_text("Outside the 24-hour window")
    dialog = page.locator("#template-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Template name").fill("follow_up_1")
    dialog.get_by_role("button", name="Send template").click()
    expect(page.locator("li.msg.out").filter(has_text="follow_up_1")).to_have_attribute("data-status", "read", timeout=20_000)
    page.context.close()
    page_errors.check()


def test_a_contact_change_made_while_the_panel_loads_shows(owner_page: Page, web: WebEnv) -> None:
    """The panel's copy of the contact is read, then a colleague renames the contact before that
    copy reaches the page: the live event carries the new name and an older copy must not win."""
    page = owner_page
    phone = new_phone()
    web.customer_says(phone, "Halo, mau tanya harga", name="Dewi Lestari")
    conversation = web.conversation_of(phone.lstrip("+"))
    contact_id = conversation["contact"]["id"]
    renamed = "Dewi Lestari (Toko Makmur)"

    def rename_before_answering(route: Any) -> None:
        stale = route.fetch()  # the contact as it was when the panel asked
        assert web.api("PATCH", f"/v1/workspaces/{web.ws}/contacts/{contact_id}", json={"name": renamed}).status_code == 200
        # Answer once the change is in the event log: its live event is on its way to the page.
        eventually(lambda: _renamed_event(web, contact_id, renamed), "the contact.updated event")
        route.fulfill(response=stale)

    page.route(f"**/v1/workspaces/*/contacts/{contact_id}", rename_before_answering)
    page.goto(f"{web.url}/w/{web.slug}/inbox?c={conversation['id']}")  # the panel opens beside the thread (1280 px)
    expect(page.locator("#contact-panel .panel-title")).to_have_text(renamed)
    expect(page.locator("#contact-panel [name=name]")).to_have_value(renamed)


def _renamed_event(web: WebEnv, contact_id: str, name: str) -> bool:
    """Whether the workspace's event log holds the rename (read through the events API, page by page)."""
    since = 0
    for _ in range(50):
        page = web.api("GET", f"/v1/workspaces/{web.ws}/events", params={"since": since, "limit": 1000}).json()
        if any(e["type"] == "contact.updated" and e["data"].get("id") == contact_id and e["data"].get("name") == name for e in page["data"]):
            return True
        if not page["data"]:
            return False
        since = page["next_since"]
    return False
