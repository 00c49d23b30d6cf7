"""What the inbox shows: filters and search agree with the API, a member sees only their own and
unassigned conversations, and hostile text from customers stays text."""

from __future__ import annotations

import re

from playwright.sync_api import Browser, Page, expect

from tests.web.conftest import DEMO_AGENT_EMAIL, PageErrors, WebEnv, login, new_page, new_phone, open_new_chat


def shown_ids(page: Page) -> list[str]:
    return page.locator("#conv-list li.conv-item").evaluate_all("rows => rows.map(r => r.dataset.id)")


def api_ids(web: WebEnv, token: str | None = None, **params: object) -> tuple[list[str], int]:
    response = web.api("GET", f"/v1/workspaces/{web.ws}/conversations", token=token, params={"limit": 200, **params})
    assert response.status_code == 200, response.text
    body = response.json()
    return [c["id"] for c in body["data"]], body["total_count"]


def expect_list_matches(page: Page, web: WebEnv, token: str | None = None, **params: object) -> list[str]:
    """The first page on screen is exactly the API's first page for the same filters."""
    ids, total = api_ids(web, token, **params)
    expect(page.locator("#conv-count")).to_have_text(re.compile(rf"^{total} conversations?$"))
    expect(page.locator("#conv-list li.conv-item").first).to_be_visible() if ids else None
    page.wait_for_function("n => document.querySelectorAll('#conv-list li.conv-item').length >= n", arg=min(len(ids), 20))
    assert shown_ids(page)[:20] == ids[:20]
    return ids


def test_filters_and_search(owner_page: Page, web: WebEnv) -> None:
    page = owner_page
    page.goto(f"{web.url}/w/{web.slug}/inbox")
    expect_list_matches(page, web)

    # Unread only: every row has a badge.
    page.get_by_role("button", name=re.compile("^Unread")).click()
    ids = expect_list_matches(page, web, unread="true")
    assert ids and page.locator("#conv-list li.conv-item:not(.unread)").count() == 0
    page.get_by_role("button", name="All", exact=True).click()

    # Lead status and conversation status (open the filter panel like a user).
    page.locator("#filters summary").click()
    page.get_by_label("Hot lead").check()
    ids = expect_list_matches(page, web, lead_status="hot_lead")
    assert ids
    for row in page.locator("#conv-list li.conv-item").all()[:10]:
        expect(row.locator(".pill").first).to_have_text("Hot lead")
    page.get_by_label("Cold lead").check()
    expect_list_matches(page, web, lead_status=["hot_lead", "cold_lead"])
    page.get_by_label("Closed").check()
    expect_list_matches(page, web, lead_status=["hot_lead", "cold_lead"], status="closed")
    page.get_by_role("button", name="Clear filters").click()
    expect_list_matches(page, web)

    # Assignee: unassigned.
    page.get_by_label("Assigned to").select_option("unassigned")
    expect_list_matches(page, web, assignee_id="unassigned")
    page.get_by_label("Assigned to").select_option("")

    # Search by name and by a phone typed the Indonesian way (0812…).
    page.locator("#filters summary").click()
    page.get_by_label("Search conversations").fill("Siregar")
    ids = expect_list_matches(page, web, q="Siregar")
    assert ids
    expect(page.locator("#conv-list li.conv-item .conv-name").first).to_contain_text("Siregar")
    first_phone = web.api("GET", f"/v1/workspaces/{web.ws}/conversations/{ids[0]}").json()["contact"]["phone"]
    local = "0" + first_phone[3:]
    page.get_by_label("Search conversations").fill(local)
    expect(page.locator("#conv-list li.conv-item").first).to_have_attribute("data-id", ids[0])


def test_infinite_scroll_loads_more(owner_page: Page, web: WebEnv) -> None:
    page = owner_page
    page.goto(f"{web.url}/w/{web.slug}/inbox")
    rows = page.locator("#conv-list li.conv-item")
    expect(rows.nth(49)).to_be_attached()
    page.locator("#conv-list").evaluate("list => list.scrollTop = list.scrollHeight")
    expect(rows.nth(99)).to_be_attached()
    ids = shown_ids(page)
    assert len(ids) == len(set(ids)), "pages must not repeat rows"


def test_member_sees_only_own_and_unassigned(browser: Browser, web: WebEnv, page_errors: PageErrors) -> None:
    agent_id = web.users[DEMO_AGENT_EMAIL]
    page = new_page(browser, page_errors)
    login(page, web.url, DEMO_AGENT_EMAIL)
    page.goto(f"{web.url}/w/{web.slug}/inbox")
    expect(page.locator("#conv-list li.conv-item").first).to_be_visible()
    page.locator("#conv-list").evaluate("list => list.scrollTop = list.scrollHeight")
    owner_total = api_ids(web)[1]
    count_text = page.locator("#conv-count").text_content() or ""
    member_total = int(count_text.split()[0])
    assert 0 < member_total < owner_total
    # Every row on screen is the agent's or nobody's (checked with the owner's view of it).
    for conversation_id in shown_ids(page):
        conversation = web.api("GET", f"/v1/workspaces/{web.ws}/conversations/{conversation_id}").json()
        assert conversation["assignee_id"] in (None, agent_id), conversation
    # Someone else's conversation cannot be opened by URL either.
    others = web.api("GET", f"/v1/workspaces/{web.ws}/conversations", params={"assignee_id": web.users["owner@demo.kabar.id"], "limit": 1}).json()["data"]
    page.goto(f"{web.url}/w/{web.slug}/inbox?c={others[0]['id']}")
    expect(page.locator("#toasts")).to_contain_text("not available")
    expect(page.locator("#thread")).to_be_hidden()
    # Settings that are not a member's are not offered.
    page.goto(f"{web.url}/w/{web.slug}/settings")
    expect(page.get_by_role("navigation", name="Settings sections").get_by_role("link")).to_have_text(["Members & invitations"])
    page.context.close()
    page_errors.check()


XSS = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script><b>bold</b>'


def test_hostile_text_renders_inert(owner_page: Page, web: WebEnv) -> None:
    page = owner_page
    page.goto(f"{web.url}/w/{web.slug}/inbox")
    expect(page.locator("#conv-list li.conv-item").first).to_be_visible()
    phone = new_phone()
    web.customer_says(phone, XSS, name='<img src=y onerror="window.__pwned=3">Eve')
    row = page.locator("#conv-list li.conv-item").first
    expect(row.locator(".conv-name")).to_have_text('<img src=y onerror="window.__pwned=3">Eve')
    row.locator("a").click()
    bubble = page.locator("#message-list li.msg.in").last
    expect(bubble.locator(".msg-text")).to_have_text(XSS)
    assert bubble.locator("img, script, b").count() == 0
    assert page.locator("#conv-list img, #conv-list script").count() == 0
    # The contact panel shows the name as text too.
    page.locator(".thread-contact").click()
    expect(page.locator("#contact-panel .panel-title")).to_have_text('<img src=y onerror="window.__pwned=3">Eve')
    assert page.locator("#contact-panel img").count() == 0
    assert page.evaluate("window.__pwned") is None


def test_conversation_controls(owner_page: Page, web: WebEnv) -> None:
    """Assign, status, snooze and the AI switch change the conversation (checked through the API)."""
    page = owner_page
    conversation = open_new_chat(page, web, "Halo, saya mau konsultasi", "Hana Controls")
    url = f"/v1/workspaces/{web.ws}/conversations/{conversation['id']}"

    page.get_by_label("Assign conversation").select_option(web.users[DEMO_AGENT_EMAIL])
    expect(page.locator("#toasts")).to_contain_text("Assigned to Demo Agent")
    assert web.api("GET", url).json()["assignee_id"] == web.users[DEMO_AGENT_EMAIL]

    page.get_by_label("Conversation status").select_option("pending")
    expect(page.locator(f"#conv-list li[data-id='{conversation['id']}'] .pill").filter(has_text="pending")).to_have_count(1)
    assert web.api("GET", url).json()["status"] == "pending"

    page.get_by_label("Conversation status").select_option("snoozed")
    page.get_by_label("Snooze until").fill("2030-02-01T09:00")
    page.get_by_role("button", name="Snooze", exact=True).click()
    expect(page.locator("#toasts")).to_contain_text("Snoozed until")
    body = web.api("GET", url).json()
    assert body["status"] == "snoozed" and body["snoozed_until"].startswith("2030-02-01T02:00")  # 09:00 WIB

    ai = page.locator("#ctl-ai")
    expect(ai).not_to_be_checked()  # assigning a person took over from ARI
    expect(page.locator("#ctl-ai-label")).to_have_text("ARI paused")
    ai.check()
    expect(page.locator("#toasts")).to_contain_text("ARI resumed")
    assert web.api("GET", url).json()["ai_paused"] is False
    ai.uncheck()
    expect(page.locator("#toasts")).to_contain_text("ARI paused")
    assert web.api("GET", url).json()["ai_paused"] is True


def test_thread_loads_older_history(owner_page: Page, web: WebEnv) -> None:
    phone = new_phone()
    for i in range(1, 61):
        web.customer_says(phone, f"Pesan nomor {i:02d}", name="Indra Panjang")
    conversation = web.conversation_of(phone.lstrip("+"))
    page = owner_page
    page.goto(f"{web.url}/w/{web.slug}/inbox?c={conversation['id']}")
    bubbles = page.locator("#message-list li.msg.in")
    expect(bubbles).to_have_count(50)  # one page, newest at the bottom
    expect(bubbles.last).to_contain_text("Pesan nomor 60")
    expect(bubbles.first).to_contain_text("Pesan nomor 11")
    page.locator("#messages").evaluate("box => box.scrollTop = 0")
    expect(bubbles).to_have_count(60)
    texts = bubbles.locator(".msg-text").all_text_contents()
    assert texts == [f"Pesan nomor {i:02d}" for i in range(1, 61)]
    expect(page.locator("#load-older")).to_be_hidden()


PNG_1x1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e2a3f3"
    "b40000000049454e44ae426082"
)


def test_send_image_with_caption(owner_page: Page, web: WebEnv) -> None:
    page = owner_page
    conversation = open_new_chat(page, web, "Boleh kirim brosurnya?", "Joko Media")
    page.locator("#attach-input").set_input_files({"name": "brosur.png", "mimeType": "image/png", "buffer": PNG_1x1})
    expect(page.locator("#attach-preview")).to_contain_text("brosur.png")
    page.get_by_label("Message", exact=True).fill("Ini brosurnya kak")
    page.get_by_role("button", name="Send").click()
    mine = page.locator("#message-list li.msg.out").filter(has_text="Ini brosurnya kak")
    expect(mine).to_have_count(1)
    expect(mine.locator("img.media-img")).to_be_visible()
    expect(mine).not_to_have_attribute("data-status", "pending", timeout=20_000)
    expect(mine).not_to_have_attribute("data-status", "failed")
    message_id = mine.get_attribute("data-id")
    stored = web.api("GET", f"/v1/workspaces/{web.ws}/conversations/{conversation['id']}/messages").json()["data"]
    sent = next(m for m in stored if m["id"] == message_id)
    assert sent["type"] == "image" and sent["media"]["caption"] == "Ini brosurnya kak"


def test_existing_conversation_moves_to_top_with_badge(owner_page: Page, web: WebEnv) -> None:
    page = owner_page
    page.goto(f"{web.url}/w/{web.slug}/inbox")
    rows = page.locator("#conv-list li.conv-item")
    expect(rows.nth(10)).to_be_attached()
    expect(page.locator("body")).to_have_attribute("data-live", "live")
    target = rows.nth(6)
    target_id = target.get_attribute("data-id")
    unread = int(target.get_attribute("data-unread") or 0)
    phone = web.api("GET", f"/v1/workspaces/{web.ws}/conversations/{target_id}").json()["contact"]["phone"]
    web.customer_says(phone, "Kak, saya jadi daftar ya")
    expect(rows.first).to_have_attribute("data-id", target_id)
    expect(rows.first.locator(".badge")).to_have_text(str(unread + 1))
    expect(rows.first).to_contain_text("Kak, saya jadi daftar ya")
    assert page.locator(f"#conv-list li.conv-item[data-id='{target_id}']").count() == 1  # moved, not copied
