"""Browser tests: Playwright (sync API) driving Debian's Chromium against real ``kabar serve``
processes, with the Kapso-compatible fake provider answering sends and posting statuses back.

The shared SQLite server is seeded with the demo workspace (300 conversations, an owner and a
member); tests that change data use their own new contacts or phones so they stay independent.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from kabar.channels.fake import payloads
from kabar.channels.fake.server import FakeProvider
from kabar.channels.kapso.webhook import FAKE_TYPING_EVENT
from kabar.demo import DEMO_AGENT_EMAIL, DEMO_EMAIL
from tests.conftest import ServerProcess, create_database, free_port, server_env

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DEMO_PASSWORD = "web-tests-demo-password"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 740}
# Slow enough that each tick (sent, delivered, read) is on screen for a while.
FAKE_DELAYS = {"sent": 0.3, "delivered": 1.2, "read": 2.2}

expect.set_options(timeout=15_000)


class ThreadedFake:
    """The fake provider on its own event loop in a thread (the tests are synchronous)."""

    def __init__(self, webhook_url: str, secret: str):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fake = FakeProvider(webhook_url=webhook_url, secret=secret, api_key="fake-key", delays=FAKE_DELAYS)
        self.url = self._run(self.fake.start())

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    @property
    def api_base_url(self) -> str:
        return self.fake.api_base_url

    @property
    def sent(self) -> list[dict[str, Any]]:
        return list(self.fake.state.messages)

    def stop(self) -> None:
        self._run(self.fake.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@dataclass
class WebEnv:
    """A running Kabar with the demo workspace, a fake WhatsApp channel, and API helpers."""

    server: ServerProcess
    fake: ThreadedFake
    ws: str
    slug: str
    pnid: str
    webhook_secret: str
    owner_token: str
    users: dict[str, str] = field(default_factory=dict)  # email → user id
    env: dict[str, str] = field(default_factory=dict)  # the server's environment, for `kabar …` commands

    @property
    def url(self) -> str:
        return self.server.url

    def api(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.owner_token}", **kwargs.pop("headers", {})}
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def customer_says(self, phone: str, text: str, name: str | None = None) -> None:
        """A signed Kapso webhook: what a real customer's message looks like on the wire."""
        doc = payloads.kapso_received(pnid=self.pnid, phone=phone, text=text, name=name)
        raw = payloads.encode(doc)
        headers = payloads.kapso_headers(raw, self.webhook_secret, "whatsapp.message.received")
        response = httpx.post(self.url + "/webhooks/kapso", content=raw, headers=headers, timeout=30)
        assert response.status_code == 200, response.text

    def customer_types(self, phone: str, state: str = "typing") -> None:
        """The fake provider's ``kabar.fake.typing`` event, as its simulated customers send it."""
        raw = payloads.encode(payloads.fake_typing(pnid=self.pnid, phone=phone, state=state))
        headers = payloads.kapso_headers(raw, self.webhook_secret, FAKE_TYPING_EVENT)
        response = httpx.post(self.url + "/webhooks/kapso", content=raw, headers=headers, timeout=30)
        assert response.status_code == 200, response.text

    def conversation_of(self, phone_digits: str) -> dict[str, Any]:
        response = self.api("GET", f"/v1/workspaces/{self.ws}/conversations", params={"q": phone_digits, "limit": 5})
        assert response.status_code == 200, response.text
        rows = [c for c in response.json()["data"] if c["contact"]["phone"].endswith(phone_digits[-9:])]
        assert rows, f"no conversation for {phone_digits}"
        return rows[0]


def _kabar(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "kabar", *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def login_token(url: str, email: str) -> str:
    response = httpx.post(url + "/v1/auth/login", json={"email": email, "password": DEMO_PASSWORD}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["token"]


def start_web_env(backend: str, tmp_dir: Path, start: Any) -> tuple[WebEnv, list[Any]]:
    """Database (migrated, demo-seeded), server(s), fake provider and channel for one backend."""
    # In a thread: Playwright's sync API keeps an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        database_url = pool.submit(create_database, backend, tmp_dir, f"web_{secrets.token_hex(3)}").result()
    port = free_port()
    env = server_env(database_url, tmp_dir, KABAR_DEMO_PASSWORD=DEMO_PASSWORD, KABAR_LOG_LEVEL="WARNING")
    _kabar(env, "seed", "--demo")
    extra: list[Any] = []
    server = start(env, port)
    if backend == "postgres":
        # On PostgreSQL jobs (the outbound send) run in worker processes.
        log = open(tmp_dir / "worker.log", "wb")  # noqa: SIM115
        worker = subprocess.Popen([sys.executable, "-m", "kabar", "worker"], env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
        extra.append((worker, log))
    owner_token = login_token(server.url, DEMO_EMAIL)
    workspaces = httpx.get(server.url + "/v1/me", headers={"Authorization": f"Bearer {owner_token}"}, timeout=30).json()["workspaces"]
    demo = next(w for w in workspaces if w["slug"] == "demo")
    secret = secrets.token_hex(16)
    fake = ThreadedFake(server.url + "/webhooks/kapso", secret)
    pnid = f"PN{secrets.randbelow(10**12)}"
    web = WebEnv(server=server, fake=fake, ws=demo["id"], slug=demo["slug"], pnid=pnid, webhook_secret=secret, owner_token=owner_token, env=env)
    response = web.api(
        "PUT",
        f"/v1/workspaces/{web.ws}/channel",
        json={"provider": "kapso", "phone_number_id": pnid, "display_phone_number": "+62 21 5000 0000",
              "api_key": "fake-key", "webhook_secret": secret, "api_base_url": fake.api_base_url},
    )
    assert response.status_code == 200, response.text
    # ARI off: the tests are about what people do; ARI's own replies are tested in its suite.
    response = web.api("PUT", f"/v1/workspaces/{web.ws}/ari/config", json={"enabled": False})
    assert response.status_code == 200, response.text
    members = web.api("GET", f"/v1/workspaces/{web.ws}/members").json()["data"]
    web.users = {m["email"]: m["user_id"] for m in members}
    return web, extra


def stop_extra(extra: list[Any]) -> None:
    for proc, log in extra:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebEnv]:
    """The shared SQLite server for the browser suite."""
    tmp_dir = tmp_path_factory.mktemp("web")
    servers: list[ServerProcess] = []

    def start(env: dict[str, str], port: int) -> ServerProcess:
        server = ServerProcess(env, port, tmp_dir / f"server-{port}.log")
        servers.append(server)
        server.wait_ready()
        return server

    env, extra = start_web_env("sqlite", tmp_dir, start)
    try:
        yield env
    finally:
        env.fake.stop()
        stop_extra(extra)
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Per module: Playwright's sync API keeps an event loop running in this thread while it is
    started, which the asyncio tests of later modules cannot share."""
    assert Path(CHROMIUM).exists(), "Debian's chromium is required (apt-get install chromium; .ci/run does it)"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class PageErrors(list):
    def check(self) -> None:
        assert not self, f"errors in the page: {self}"


@pytest.fixture
def page_errors() -> PageErrors:
    return PageErrors()


def new_page(browser: Browser, errors: list[str], viewport: dict[str, int] = DESKTOP) -> Page:
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    # Content-Security-Policy violations are reported on the console: the UI must not cause any.
    page.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
    return page


def login(page: Page, base_url: str, email: str = DEMO_EMAIL, path: str | None = None) -> None:
    page.goto(base_url + "/login" + (f"?next={path}" if path else ""))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/login" not in url)


@pytest.fixture
def owner_page(browser: Browser, web: WebEnv, page_errors: PageErrors) -> Iterator[Page]:
    page = new_page(browser, page_errors)
    login(page, web.url)
    yield page
    page.context.close()
    page_errors.check()


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def new_phone() -> str:
    return "+62857" + str(10_000_000 + secrets.randbelow(89_999_999))


def eventually(condition: Any, what: str, timeout: float = 15.0) -> None:
    """Poll ``condition()`` until it is true (server-side effects of a click land a moment later)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)


def open_new_chat(page: Page, web: WebEnv, text: str, name: str) -> dict[str, Any]:
    """A new customer writes; the owner's page opens that conversation. Returns the conversation."""
    phone = new_phone()
    web.customer_says(phone, text, name=name)
    conversation = web.conversation_of(phone.lstrip("+"))
    page.goto(f"{web.url}/w/{web.slug}/inbox?c={conversation['id']}")
    expect(page.locator("#message-list li.msg.in")).to_have_count(1)
    return conversation
