"""ARI's pause shows live: with the thread open, a colleague's reply (a human takeover) turns the
ARI switch to "ARI paused" without a reload, and switching it back resumes ARI."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from kabar.demo import DEMO_AGENT_EMAIL
from tests.web.conftest import WebEnv, login_token, open_new_chat


def test_a_colleague_s_reply_shows_ari_paused_live(owner_page: Page, web: WebEnv) -> None:
    page = owner_page
    conversation = open_new_chat(page, web, "Halo, mau tanya kuliah di Jepang", "Rini Takeover")
    switch, label = page.locator("#ctl-ai"), page.locator("#ctl-ai-label")
    expect(switch).to_be_checked()
    expect(label).to_have_text("ARI on")

    agent = login_token(web.url, DEMO_AGENT_EMAIL)
    url = f"/v1/workspaces/{web.ws}/conversations/{conversation['id']}"
    response = web.api("POST", f"{url}/messages", token=agent, json={"type": "text", "text": "Halo kak, saya bantu ya"})
    assert response.status_code == 202, response.text

    expect(page.locator("li.msg.out").filter(has_text="saya bantu ya")).to_have_count(1)
    expect(label).to_have_text("ARI paused")  # live, from conversation.updated
    expect(switch).not_to_be_checked()

    switch.check()  # resume ARI
    expect(page.locator("#toasts")).to_contain_text("ARI resumed")
    expect(label).to_have_text("ARI on")
    assert web.api("GET", url).json()["ai_paused"] is False
