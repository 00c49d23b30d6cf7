"""In the browser: the channel settings' test message (accepted, and refused with the provider's
error), reacting to a message from the thread (keyboard only; optimistic; live for a colleague;
removed again), a customer's typing indicator appearing and going away, and staff typing shown to
the customer through WhatsApp's indicator."""

from __future__ import annotations

from playwright.sync_api import Browser, Page, expect

from tests.web.conftest import PageErrors, WebEnv, eventually, login, new_page, new_phone, open_new_chat


def test_channel_settings_send_test_message(owner_page: Page, web: WebEnv) -> None:
    page = owner_page
    page.goto(f"{web.url}/w/{web.slug}/settings/channel")
    form = page.locator("#channel-test-form")
    result = page.locator("#channel-test-result")
    phone = new_phone()
    form.get_by_label("Send a test message to (phone)").fill("0" + phone[3:])  # as an Indonesian types it: 0857…
    form.get_by_label("Text").fill("Tes koneksi dari pengaturan")
    form.get_by_role("button", name="Send test message").click()
    expect(result).to_contain_text("Accepted by the provider")
    expect(result).to_contain_text(phone)
    sent = [m for m in web.fake.sent if m["to"] == phone]
    assert [m["body"]["text"]["body"] for m in sent] == ["Tes koneksi dari pengaturan"]
    expect(result).to_contain_text(sent[0]["id"])
    # The link opens that number's conversation, where the test message shows with its ticks.
    result.get_by_role("link", name="See its delivery in the inbox").click()
    mine = page.locator("#message-list li.msg.out").filter(has_text="Tes koneksi dari pengaturan")
    expect(mine).to_have_attribute("data-status", "read", timeout=20_000)

    # The provider refuses: its error code and title are on the page, nothing else changes.
    page.goto(f"{web.url}/w/{web.slug}/settings/channel")
    web.fake.fake.state.failures.append({"status": 400, "code": 131030})
    form.get_by_label("Send a test message to (phone)").fill(new_phone())
    form.get_by_role("button", name="Send test message").click()
    expect(result).to_contain_text("The WhatsApp provider refused the message")
    expect(result).to_contain_text("131030")
    expect(result).to_contain_text("allowed list")
    # A number that is not one: the field's problem, before anything is sent.
    requests = len(web.fake.fake.state.requests)
    form.get_by_label("Send a test message to (phone)").fill("12ab")
    form.get_by_role("button", name="Send test message").click()
    expect(result).to_contain_text("to: is not a phone number")
    assert len(web.fake.fake.state.requests) == requests


def _reaction_requests(web: WebEnv, wamid: str) -> list[str]:
    return [m["body"]["reaction"]["emoji"] for m in web.fake.sent if m["body"].get("type") == "reaction" and m["body"]["reaction"]["message_id"] == wamid]


def test_react_to_a_message_with_the_keyboard(browser: Browser, owner_page: Page, web: WebEnv, page_errors: PageErrors) -> None:
    page = owner_page
    conversation = open_new_chat(page, web, "Kak, jadwal konsultasinya hari Sabtu ya?", name="Laras Ayu")
    history = web.api("GET", f"/v1/workspaces/{web.ws}/conversations/{conversation['id']}/messages").json()["data"]
    wamid = history[0]["provider_message_id"]
    # A colleague has the same conversation open.
    colleague = new_page(browser, page_errors)
    login(colleague, web.url)
    colleague.goto(f"{web.url}/w/{web.slug}/inbox?c={conversation['id']}")
    expect(colleague.locator("body")).to_have_attribute("data-live", "live")

    bubble = page.locator("#message-list li.msg.in").first
    trigger = bubble.get_by_role("button", name="React to this message")
    trigger.focus()
    page.keyboard.press("Enter")
    picker = bubble.get_by_role("group", name="Choose a reaction")
    expect(picker).to_be_visible()
    expect(picker.get_by_role("button", name="React with 👍")).to_be_focused()
    page.keyboard.press("ArrowRight")  # 👍 → ❤️
    expect(picker.get_by_role("button", name="React with ❤️")).to_be_focused()
    page.keyboard.press("Enter")
    expect(picker).to_have_count(0)
    expect(trigger).to_be_focused()  # focus goes back where it was
    mine = bubble.locator(".reaction[data-by=business]")
    expect(mine).to_have_text("❤️")  # at once, while it is being sent
    expect(mine).to_have_attribute("title", "Your team", timeout=20_000)  # sent: no longer "sending"
    eventually(lambda: _reaction_requests(web, wamid) == ["❤️"], "WhatsApp got the reaction")
    expect(colleague.locator("#message-list li.msg.in").first.locator(".reaction[data-by=business]")).to_have_text("❤️")

    # Escape closes the picker without reacting; "Remove" takes the reaction back.
    trigger.click()
    expect(picker).to_be_visible()
    page.keyboard.press("Escape")
    expect(picker).to_have_count(0)
    trigger.click()
    picker.get_by_role("button", name="Remove your reaction").click()
    expect(mine).to_have_count(0)
    eventually(lambda: _reaction_requests(web, wamid) == ["❤️", ""], "WhatsApp got the removal")
    expect(colleague.locator("#message-list li.msg.in").first.locator(".reaction")).to_have_count(0)
    colleague.context.close()


def test_customer_typing_shows_and_goes_away(owner_page: Page, web: WebEnv) -> None:
    page = owner_page
    conversation = open_new_chat(page, web, "Halo kak", name="Tiara Putri")
    phone = conversation["contact"]["phone"]
    expect(page.locator("body")).to_have_attribute("data-live", "live")
    typing = page.locator("#typing")
    row = page.locator(f"#conv-list li.conv-item[data-id='{conversation['id']}']")
    expect(typing).to_be_hidden()
    web.customer_types(phone)
    expect(typing).to_be_visible()
    expect(typing).to_have_text("typing…")
    expect(row.locator(".conv-typing")).to_have_text("typing…")
    # The message arrives: the indicator goes, the message is there.
    web.customer_says(phone, "Mau tanya biaya kursus IELTS")
    expect(page.locator("#message-list li.msg.in").last).to_contain_text("Mau tanya biaya kursus IELTS")
    expect(typing).to_be_hidden()
    expect(row.locator(".conv-typing")).to_have_count(0)
    # Typing, then stopping without a message (paused) also clears it.
    web.customer_types(phone)
    expect(typing).to_be_visible()
    web.customer_types(phone, "paused")
    expect(typing).to_be_hidden()

    # Staff typing a reply: the customer sees WhatsApp's own "typing…" (mark-as-read of their
    # latest message with a typing indicator).
    latest = web.api("GET", f"/v1/workspaces/{web.ws}/conversations/{conversation['id']}/messages").json()["data"][0]
    page.get_by_label("Message", exact=True).press_sequentially("Sebentar ya kak")
    eventually(lambda: any(r["message_id"] == latest["provider_message_id"] and r["typing"] for r in web.fake.fake.state.reads),
               "WhatsApp's typing indicator was requested")
