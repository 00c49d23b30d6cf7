"""Contacts (edit, tags, notes and tasks, CSV import) and settings, through the browser; every
change is checked against the API afterwards."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.web.conftest import WebEnv, _kabar, new_phone


def create_contact(web: WebEnv, name: str) -> dict:
    response = web.api("POST", f"/v1/workspaces/{web.ws}/contacts", json={"phone": new_phone(), "name": name})
    assert response.status_code == 201, response.text
    return response.json()


def test_contact_edit_tags_and_notes(owner_page: Page, web: WebEnv) -> None:
    contact = create_contact(web, "Citra Lestari")
    page = owner_page
    page.goto(f"{web.url}/w/{web.slug}/contacts")
    page.get_by_label("Search").fill("Citra Lestari")
    row = page.locator("#contacts-table tbody tr").filter(has_text="Citra Lestari")
    expect(row).to_have_count(1)
    row.get_by_role("button", name="Citra Lestari").click()

    panel = page.locator("#contact-panel")
    expect(panel.get_by_label("Name")).to_have_value("Citra Lestari")
    panel.get_by_label("Name").fill("Citra Lestari Putri")
    panel.get_by_label("Email").fill("citra@contoh.id")
    panel.get_by_label("Lead status").select_option("hot_lead")
    panel.get_by_label("Score").fill("72")
    panel.get_by_label("Add a tag").fill("beasiswa")
    panel.get_by_role("button", name="Add", exact=True).click()
    panel.get_by_label("Add a tag").fill("s2")
    panel.get_by_label("Add a tag").press("Enter")
    expect(panel.locator(".chip")).to_have_count(2)
    panel.get_by_role("button", name="Save contact").click()
    expect(page.locator("#toasts")).to_contain_text("Contact saved")
    saved = web.api("GET", f"/v1/workspaces/{web.ws}/contacts/{contact['id']}").json()
    assert (saved["name"], saved["email"], saved["lead_status"], saved["lead_score"]) == ("Citra Lestari Putri", "citra@contoh.id", "hot_lead", 72)
    assert saved["tags"] == ["beasiswa", "s2"]

    # Bad input: the field says what is wrong, nothing is saved.
    panel.get_by_label("Email").fill("not-an-email")
    panel.get_by_role("button", name="Save contact").click()
    expect(panel.locator(".field-error")).to_contain_text("email")
    assert web.api("GET", f"/v1/workspaces/{web.ws}/contacts/{contact['id']}").json()["email"] == "citra@contoh.id"

    # A note, and a task with a due time (WIB).
    panel.get_by_label("New note").fill("Tertarik S2 di Melbourne, budget 400 juta")
    panel.get_by_role("button", name="Add note").click()
    expect(panel.locator(".note")).to_have_count(1)
    panel.get_by_label("New note").fill("Telepon balik soal beasiswa")
    panel.get_by_label("Due (task, optional)").fill("2030-01-15T10:30")
    panel.get_by_role("button", name="Add note").click()
    expect(panel.locator(".note")).to_have_count(2)
    task = panel.locator(".note").filter(has_text="Telepon balik")
    expect(task.locator(".note-due")).to_contain_text("WIB")
    task.get_by_label("Task done").check()
    expect(panel.locator(".note.done")).to_have_count(1)
    notes = web.api("GET", f"/v1/workspaces/{web.ws}/contacts/{contact['id']}/notes").json()["data"]
    by_content = {n["content"]: n for n in notes}
    assert by_content["Telepon balik soal beasiswa"]["due_at"].startswith("2030-01-15T03:30")  # 10:30 WIB
    assert by_content["Telepon balik soal beasiswa"]["completed_at"] is not None
    assert by_content["Tertarik S2 di Melbourne, budget 400 juta"]["due_at"] is None


def test_contact_page_leads_to_the_chat(owner_page: Page, web: WebEnv) -> None:
    phone = new_phone()
    web.customer_says(phone, "Halo, ini Lina dari Bandung", name="Lina Bandung")
    page = owner_page
    page.goto(f"{web.url}/w/{web.slug}/contacts")
    page.get_by_label("Search").fill("Lina Bandung")
    page.locator("#contacts-table tbody tr").filter(has_text="Lina Bandung").get_by_role("button").click()
    panel = page.locator("#contact-panel")
    expect(panel.locator(".recent")).to_contain_text("Halo, ini Lina dari Bandung")
    panel.get_by_role("link", name="Open the chat in the inbox").click()
    expect(page.locator("#message-list li.msg.in")).to_contain_text("Halo, ini Lina dari Bandung")


def test_merge_duplicate_contact(owner_page: Page, web: WebEnv) -> None:
    keep = create_contact(web, "Dodi Kurniawan")
    duplicate = create_contact(web, "Dodi K (HP lama)")
    page = owner_page
    page.goto(f"{web.url}/w/{web.slug}/contacts")
    page.get_by_label("Search").fill("Dodi Kurniawan")
    page.locator("#contacts-table tbody tr").filter(has_text="Dodi Kurniawan").get_by_role("button").click()
    panel = page.locator("#contact-panel")
    panel.get_by_label("Find contact to merge").fill("HP lama")
    page.once("dialog", lambda dialog: dialog.accept())
    panel.locator(".merge-results li").filter(has_text="Dodi K (HP lama)").get_by_role("button", name="Merge into this").click()
    expect(page.locator("#toasts")).to_contain_text("merged")
    assert web.api("GET", f"/v1/workspaces/{web.ws}/contacts/{duplicate['id']}").status_code == 404
    assert web.api("GET", f"/v1/workspaces/{web.ws}/contacts/{keep['id']}").status_code == 200


def test_csv_import_preview_and_commit(owner_page: Page, web: WebEnv) -> None:
    good_1, good_2 = new_phone(), new_phone()
    local_2 = "0" + good_2[3:]  # the same number as Indonesians write it
    csv = (
        "name,phone,email,tags,lead_status,lead_score\n"
        f"Eka Saputra,{good_1},eka@contoh.id,\"webinar,s1\",hot,80\n"
        f"Fitri Handayani,{local_2},,beasiswa,prospect,\n"
        "Tanpa Nomor,,x@contoh.id,,,\n"
        f"Dobel,{good_2},,,,\n"
        "Salah Email,081299998888,bukan-email,,,\n"
    )
    page = owner_page
    page.goto(f"{web.url}/w/{web.slug}/contacts/import")
    page.get_by_label("CSV file").set_input_files({"name": "leads.csv", "mimeType": "text/csv", "buffer": csv.encode()})
    page.get_by_role("button", name="Preview").click()
    summary = page.locator("#import-summary")
    expect(summary).to_contain_text("5 rows")
    expect(summary).to_contain_text("2 new")
    expect(summary).to_contain_text("2 with errors")
    expect(summary).to_contain_text("1 duplicates in file")
    bad = page.locator("#import-rows tbody tr.row-invalid")
    expect(bad).to_have_count(3)
    expect(bad.filter(has_text="phone: is required")).to_have_count(1)
    expect(bad.filter(has_text="email:")).to_have_count(1)
    expect(bad.filter(has_text="Duplicate in file")).to_have_count(1)
    # Nothing is written by a preview.
    assert web.api("GET", f"/v1/workspaces/{web.ws}/contacts/by-phone", params={"phone": good_1}).json()["found"] is False

    page.get_by_role("button", name="Import 2 contacts").click()
    expect(page.locator("#import-done")).to_contain_text("2 created")
    eka = web.api("GET", f"/v1/workspaces/{web.ws}/contacts/by-phone", params={"phone": good_1}).json()
    assert eka["found"] and eka["contact"]["name"] == "Eka Saputra" and eka["contact"]["lead_status"] == "hot_lead"
    assert sorted(eka["contact"]["tags"]) == ["s1", "webinar"]
    fitri = web.api("GET", f"/v1/workspaces/{web.ws}/contacts/by-phone", params={"phone": good_2}).json()
    assert fitri["found"] and fitri["contact"]["name"] == "Fitri Handayani"


def test_settings_save_and_quick_reply_in_composer(owner_page: Page, web: WebEnv) -> None:
    page = owner_page
    page.goto(f"{web.url}/w/{web.slug}/settings/workspace")
    form = page.locator("#workspace-form")
    expect(form.get_by_label("Workspace name")).to_have_value(re.compile(".+"))
    form.get_by_label("Workspace name").fill("Kabar Demo Konsultan")
    form.get_by_label("Suggested contact tags").fill("australia, beasiswa, vip")
    form.get_by_role("button", name="Add quick reply").click()
    form.get_by_label("Label").last.fill("Salam")
    form.get_by_label("Text").last.fill("Halo kak, terima kasih sudah menghubungi Kabar Demo 😊")
    form.get_by_role("button", name="Save workspace").click()
    expect(page.locator("#toasts")).to_contain_text("Workspace saved")
    workspace = web.api("GET", f"/v1/workspaces/{web.ws}").json()
    assert workspace["name"] == "Kabar Demo Konsultan"
    assert workspace["settings"]["contact_tags"] == ["australia", "beasiswa", "vip"]
    assert any(r["label"] == "Salam" for r in workspace["settings"]["quick_replies"])
    page.reload()
    expect(page.locator("#workspace-form").get_by_label("Workspace name")).to_have_value("Kabar Demo Konsultan")

    # The quick reply is one keystroke away in the composer.
    page.goto(f"{web.url}/w/{web.slug}/inbox")
    page.locator("#conv-list li.conv-item a").first.click()
    composer = page.get_by_label("Message", exact=True)
    composer.fill("/sal")
    expect(page.locator("#quick-menu")).to_contain_text("Salam")
    composer.press("Enter")
    expect(composer).to_have_value("Halo kak, terima kasih sudah menghubungi Kabar Demo 😊")

    # An API key: the secret is shown once and works.
    page.goto(f"{web.url}/w/{web.slug}/settings/api-keys")
    page.get_by_label("Key name").fill("n8n bot")
    page.get_by_role("button", name="Create API key").click()
    secret = page.locator(".secret-value").text_content()
    assert secret and secret.startswith("kbr_")
    assert web.api("GET", f"/v1/workspaces/{web.ws}/contacts", token=secret, params={"limit": 1}).status_code == 200
    expect(page.locator("#api-key-list")).to_contain_text("n8n bot")

    # ARI scoring: weights that do not add up to 100 are refused with the reason.
    page.goto(f"{web.url}/w/{web.slug}/settings/ari-scoring")
    page.get_by_label("Weight: basic").fill("50")
    expect(page.get_by_role("status").filter(has_text="Weights add up to")).to_contain_text("must be 100")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".form-error, .field-error").first).to_be_visible()


def test_invitation_accept_flow(owner_page: Page, web: WebEnv, browser) -> None:  # noqa: ANN001
    page = owner_page
    page.goto(f"{web.url}/w/{web.slug}/settings/members")
    email = f"baru-{new_phone()[-6:]}@contoh.id"
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Create invitation").click()
    # The link goes to the invitee's mailbox only; without SMTP, `kabar mail list` shows it.
    expect(page.get_by_role("status").filter(has_text="Invitation mailed to")).to_contain_text(email)
    expect(page.locator("#invitation-list")).to_contain_text(email)
    mail = _kabar(web.env, "mail", "list", "--to", email)
    token = re.search(r"/accept-invite\?token=(\S+)", mail).group(1)
    link = f"{web.url}/accept-invite?token={token}"
    # No mail server here: the page also shows the link once, for the owner to pass on.
    expect(page.get_by_label("Invitation link")).to_have_value(re.compile(re.escape(f"/accept-invite?token={token}")))

    guest = browser.new_context(viewport={"width": 375, "height": 740}).new_page()
    guest.goto(link)
    guest.get_by_label("Your name").fill("Gita Baru")
    guest.get_by_label("Password").fill("rahasia-gita-123")
    guest.get_by_role("button", name="Accept invitation").click()
    guest.wait_for_url(re.compile(r"/w/.+/inbox"))
    expect(guest.locator("#conv-list li.conv-item").first).to_be_visible()
    guest.context.close()
    members = web.api("GET", f"/v1/workspaces/{web.ws}/members").json()["data"]
    assert any(m["email"] == email and m["role"] == "member" for m in members)


def test_ari_and_webhook_settings_pages(owner_page: Page, web: WebEnv) -> None:
    page = owner_page
    base = f"/v1/workspaces/{web.ws}"

    page.goto(f"{web.url}/w/{web.slug}/settings/ari")
    form = page.locator("#settings-content form")
    form.get_by_label("Bot name").fill("Mbak Rara")
    form.get_by_label("Tone and persona").fill("Ramah dan santai, pakai sapaan kak")
    form.get_by_role("button", name="Save").click()
    expect(page.locator("#toasts")).to_contain_text("Saved")
    config = web.api("GET", f"{base}/ari/config").json()
    assert config["bot_name"] == "Mbak Rara" and config["tone"]["description"] == "Ramah dan santai, pakai sapaan kak"
    assert config["enabled"] is False  # untouched fields keep their values

    page.goto(f"{web.url}/w/{web.slug}/settings/ari-flow")
    add = page.locator("#settings-content > div > form")
    add.get_by_label("Stage name").fill("Tanya jurusan")
    add.get_by_label("Goal").fill("Cari tahu jurusan yang diminati")
    add.get_by_role("button", name="Add stage").click()
    expect(page.locator(".item-list")).to_contain_text("Tanya jurusan")
    stages = web.api("GET", f"{base}/ari/flow-stages").json()
    stages = stages["data"] if isinstance(stages, dict) else stages
    assert any(s["name"] == "Tanya jurusan" for s in stages)

    page.goto(f"{web.url}/w/{web.slug}/settings/ari-knowledge")
    add = page.locator("#settings-content > div > form")
    add.get_by_label("Title").fill("Biaya S2 Australia")
    add.get_by_label("Content").fill("Mulai Rp 350 juta per tahun, termasuk biaya hidup.")
    add.get_by_role("button", name="Add knowledge entry").click()
    item = page.locator(".item-list > li").filter(has_text="Biaya S2 Australia")
    expect(item).to_have_count(1)
    item.get_by_text("Edit").click()
    item.get_by_label("Title").fill("Biaya S2 Australia 2026")
    item.get_by_role("button", name="Save").click()
    expect(page.locator(".item-list")).to_contain_text("Biaya S2 Australia 2026")

    page.goto(f"{web.url}/w/{web.slug}/settings/ari-slots")
    add = page.locator("#settings-content > div > form")
    add.get_by_label("Day").select_option(label="Sabtu (Sat)")
    add.get_by_label("From (WIB)").fill("09:00")
    add.get_by_label("Until (WIB)").fill("12:00")
    add.get_by_role("button", name="Add slot").click()
    expect(page.locator(".item-list")).to_contain_text("Sabtu (Sat) 09:00–12:00 WIB")
    # Stored with the engine's numbering (Python weekday(): Saturday = 5), so ARI books Saturdays.
    slots = web.api("GET", f"{base}/ari/slots").json()["data"]
    assert [s["day_of_week"] for s in slots if s["start_time"].startswith("09:00")] == [5]
    # An impossible slot is refused with the reason, nothing added.
    add.get_by_label("From (WIB)").fill("15:00")
    add.get_by_label("Until (WIB)").fill("14:00")
    add.get_by_role("button", name="Add slot").click()
    expect(add.locator(".form-error, .field-error").first).to_be_visible()

    page.goto(f"{web.url}/w/{web.slug}/settings/webhooks")
    page.get_by_label("Endpoint URL").fill("http://127.0.0.1:9/kabar-hook")
    page.get_by_label("message.created").check()
    page.get_by_role("button", name="Add webhook").click()
    secret = page.locator(".secret-value").text_content()
    assert secret
    expect(page.locator("#webhook-list")).to_contain_text("http://127.0.0.1:9/kabar-hook")
    hooks = web.api("GET", f"{base}/webhooks").json()["data"]
    assert any(h["url"] == "http://127.0.0.1:9/kabar-hook" and h["events"] == ["message.created"] for h in hooks)
