"""Account pages in the browser: accepting an invitation as an existing account, forgot/reset
password, confirming an email. Links come from the outbox (`kabar mail list`), as the demo's
operator reads them."""

from __future__ import annotations

import re
import secrets
from urllib.parse import urlsplit

from playwright.sync_api import Browser, Page, expect

from tests.web.conftest import DEMO_PASSWORD, WebEnv, _kabar, eventually, new_page


def mailed_link(web: WebEnv, email: str, path: str) -> str:
    """The newest link to ``path`` mailed to ``email``, on this server's address."""
    found: list[str] = []

    def seen() -> bool:
        urls = re.findall(r"https?://\S+", _kabar(web.env, "mail", "list", "--to", email))
        found[:] = [u for u in urls if urlsplit(u).path == path]
        return bool(found)

    eventually(seen, f"a mail to {email} with a link to {path}")
    parts = urlsplit(found[0])
    return f"{web.url}{parts.path}?{parts.query}"


def operator_user(web: WebEnv, prefix: str) -> str:
    email = f"{prefix}-{secrets.token_hex(4)}@contoh.id"
    _kabar(web.env, "user", "create", "--email", email, "--password", DEMO_PASSWORD, "--name", prefix.title())
    return email


def invite(web: WebEnv, email: str) -> None:
    response = web.api("POST", f"/v1/workspaces/{web.ws}/invitations", json={"email": email})
    assert response.status_code == 201, response.text


def test_existing_account_signs_in_then_accepts_with_one_click(browser: Browser, web: WebEnv, page_errors) -> None:  # noqa: ANN001
    email = operator_user(web, "ada")
    invite(web, email)
    link = mailed_link(web, email, "/accept-invite")
    page: Page = new_page(browser, page_errors)
    page.goto(link)
    expect(page.locator("#accept-form")).to_have_count(0)  # no password form for an existing account
    page.get_by_role("link", name=f"Sign in as {email} to accept").click()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/accept-invite" in url)
    page.get_by_role("button", name="Accept invitation").click()
    page.wait_for_url(re.compile(r"/w/.+/inbox"))
    members = web.api("GET", f"/v1/workspaces/{web.ws}/members").json()["data"]
    assert any(m["email"] == email for m in members)
    page.context.close()
    page_errors.check()


def test_forgot_password_mails_a_link_that_sets_a_new_one(browser: Browser, web: WebEnv, page_errors) -> None:  # noqa: ANN001
    email = operator_user(web, "budi")
    page = new_page(browser, page_errors)
    page.goto(web.url + "/login")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Send the link").click()
    expect(page.locator("#forgot-sent")).to_be_visible()

    page.goto(mailed_link(web, email, "/reset-password"))
    page.get_by_label("New password").fill("kata-sandi-baru-123")
    page.get_by_role("button", name="Set password").click()
    expect(page.locator("#reset-done")).to_be_visible()
    page.goto(web.url + "/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("kata-sandi-baru-123")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/login" not in url)
    page.context.close()
    page_errors.check()


def test_new_account_confirms_its_email_from_the_mail(browser: Browser, web: WebEnv, page_errors) -> None:  # noqa: ANN001
    email = f"citra-{secrets.token_hex(4)}@contoh.id"
    invite(web, email)
    page = new_page(browser, page_errors)
    page.goto(mailed_link(web, email, "/accept-invite"))
    page.get_by_label("Your name").fill("Citra")
    page.get_by_label("Password").fill("rahasia-citra-123")
    page.get_by_role("button", name="Accept invitation").click()
    page.wait_for_url(re.compile(r"/w/.+/inbox"))
    page.goto(web.url + "/account")
    expect(page.locator("#email-status")).to_have_text("not verified")

    page.goto(mailed_link(web, email, "/verify-email"))
    page.get_by_role("button", name="Confirm my email").click()
    expect(page.locator("#verify-done")).to_be_visible()
    page.goto(web.url + "/account")
    expect(page.locator("#email-status")).to_have_text("verified")
    expect(page.locator("#resend-verification")).to_have_count(0)
    page.context.close()
    page_errors.check()
