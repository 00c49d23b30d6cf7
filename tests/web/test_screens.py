"""The main pages at desktop (1280×800) and phone (375 px) width: each renders without errors or
horizontal overflow, the keyboard reaches the controls, and a screenshot is saved under
test-artifacts/screenshots/ for people to look at."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.web.conftest import DESKTOP, PHONE, PageErrors, WebEnv, login, new_page, screenshot

PAGES = [
    ("contacts", "/contacts", "#contacts-table tbody tr"),
    ("dashboard", "/dashboard", "#dash-cards li"),
    ("settings-workspace", "/settings/workspace", "#workspace-form"),
    ("settings-members", "/settings/members", "#members-table tbody tr"),
    ("settings-channel", "/settings/channel", "#channel-form"),
    ("settings-ari", "/settings/ari", "#settings-content form"),
    ("import", "/contacts/import", "#import-form"),
]


def no_horizontal_overflow(page: Page) -> None:
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 1, f"page is {overflow}px wider than the screen"


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_main_pages(browser: Browser, web: WebEnv, page_errors: PageErrors, size: str) -> None:
    viewport = DESKTOP if size == "desktop" else PHONE
    page = new_page(browser, page_errors, viewport)
    page.goto(web.url + "/login")
    screenshot(page, f"login-{size}")
    login(page, web.url)

    # Inbox: the list, then a conversation with the contact panel.
    page.goto(f"{web.url}/w/{web.slug}/inbox")
    expect(page.locator("#conv-list li.conv-item").first).to_be_visible()
    no_horizontal_overflow(page)
    screenshot(page, f"inbox-{size}")
    page.locator("#conv-list li.conv-item a").first.click()
    expect(page.locator("#message-list li.msg").first).to_be_visible()
    if size == "phone":
        expect(page.locator(".conv-pane")).to_be_hidden()  # stacked: the thread replaces the list
    no_horizontal_overflow(page)
    screenshot(page, f"inbox-thread-{size}")
    if size == "phone":
        page.locator(".thread-contact").click()  # wide screens show the panel beside the thread
    expect(page.locator("#contact-panel").get_by_label("Name")).to_be_visible()
    no_horizontal_overflow(page)
    screenshot(page, f"inbox-contact-{size}")
    if size == "phone":
        page.get_by_role("button", name="Close contact panel").click()
        expect(page.locator("#message-list")).to_be_visible()
        page.get_by_role("button", name="Back to conversations").click()
        expect(page.locator("#conv-list")).to_be_visible()

    for name, path, ready in PAGES:
        page.goto(f"{web.url}/w/{web.slug}{path}")
        expect(page.locator(ready).first).to_be_visible()
        no_horizontal_overflow(page)
        screenshot(page, f"{name}-{size}")
    page.context.close()
    page_errors.check()


def test_keyboard_only_reply(browser: Browser, web: WebEnv, page_errors: PageErrors) -> None:
    """Tab to a conversation, open it with Enter, type and send with Enter: no mouse needed."""
    page = new_page(browser, page_errors)
    login(page, web.url)
    page.goto(f"{web.url}/w/{web.slug}/inbox")
    first = page.locator("#conv-list li.conv-item a").first
    expect(first).to_be_visible()
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.closest('#conv-list') !== null"):
            break
    else:
        pytest.fail("Tab never reached the conversation list")
    # The focused control is visibly outlined.
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), outline
    page.keyboard.press("Enter")
    expect(page.locator("#message-list li.msg").first).to_be_visible()
    page.get_by_label("Message", exact=True).focus()
    page.keyboard.type("Baik kak, kami bantu ya")
    page.keyboard.press("Enter")
    expect(page.locator("#message-list li.msg.out").filter(has_text="Baik kak, kami bantu ya")).to_have_count(1)
    page.context.close()
    page_errors.check()


def test_signed_out_pages_redirect_to_login(browser: Browser, web: WebEnv, page_errors: PageErrors) -> None:
    page = new_page(browser, page_errors)
    page.goto(f"{web.url}/w/{web.slug}/contacts")
    expect(page).to_have_url(f"{web.url}/login?next=%2Fw%2F{web.slug}%2Fcontacts")
    page.get_by_label("Email").fill("owner@demo.kabar.id")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("Wrong email or password")
    login(page, web.url, path=f"/w/{web.slug}/contacts")
    expect(page).to_have_url(f"{web.url}/w/{web.slug}/contacts")
    # Logging out ends the session: the pages go back to the login.
    page.get_by_label("Account menu").click()
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{web.url}/login")
    page.goto(f"{web.url}/w/{web.slug}/inbox")
    expect(page).to_have_url(f"{web.url}/login?next=%2Fw%2F{web.slug}%2Finbox")
    page.context.close()
    page_errors.check()
