"""Small holes, in a real browser (issue 13, item 10): the API reference at /schema works with
nothing but this server's files under the CSP; the login page never sends anyone to another
site; a ``javascript:`` (or any non-http(s)) URL never becomes a link."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Browser, Page, Route, expect

from tests.web.conftest import PageErrors, WebEnv, login, new_page

STATIC_JS = Path(__file__).resolve().parents[2] / "src" / "kabar" / "web" / "static" / "js"


def _only_this_server(page: Page, web: WebEnv) -> list[str]:
    """Abort every request to another origin (no traffic leaves 127.0.0.1); returns their URLs."""
    elsewhere: list[str] = []
    origin = urlsplit(web.url).netloc

    def handle(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).netloc == origin or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            elsewhere.append(url)
            route.abort()

    page.route("**/*", handle)
    return elsewhere


def test_schema_page_renders_from_our_own_files_under_the_csp(browser: Browser, web: WebEnv, page_errors: PageErrors) -> None:
    page = new_page(browser, page_errors)
    elsewhere = _only_this_server(page, web)
    response = page.goto(web.url + "/schema")
    assert response is not None and response.headers["content-security-policy"].startswith("default-src 'self'")
    # Swagger UI drew the operations from /schema/openapi.json.
    expect(page.locator(".opblock").first).to_be_visible()
    assert page.locator(".opblock").count() > 20
    assert elsewhere == []
    page.context.close()
    page_errors.check()  # no Content-Security-Policy violation, no script error


EVIL_NEXT = ["/%09/evil.example", "/%5Cevil.example", "//evil.example", "/%0A/evil.example", "javascript:alert(1)", "https://evil.example/"]


def test_login_next_never_leaves_the_site(browser: Browser, web: WebEnv, page_errors: PageErrors) -> None:
    origin = urlsplit(web.url).netloc
    for target in EVIL_NEXT:
        page = new_page(browser, page_errors)
        elsewhere = _only_this_server(page, web)
        login(page, web.url, path=target)
        assert urlsplit(page.url).netloc == origin, (target, page.url)
        assert elsewhere == [], (target, elsewhere)
        page.context.close()
    page_errors.check()


BAD_URLS = [
    "javascript:alert(document.domain)",
    "JaVaScRiPt:alert(1)",
    " javascript:alert(1)",
    "java\tscript:alert(1)",
    "\u0001javascript:alert(1)",
    "vbscript:msgbox(1)",
    "data:text/html,<script>alert(1)</script>",
    "file:///etc/passwd",
]
GOOD_URLS = ["https://example.test/a.jpg", "http://example.test/doc.pdf", "/v1/workspaces/x/uploads/y", "?c=1"]


def test_no_link_is_built_from_a_non_http_url(browser: Browser, web: WebEnv, page_errors: PageErrors) -> None:
    """Every link and media element of the UI is built by ``h()`` (dom.js), which drops any
    ``href``/``src`` that is not http(s): here with the URLs a message, contact or setting might carry."""
    page = new_page(browser, page_errors)
    elsewhere = _only_this_server(page, web)
    login(page, web.url)
    result = page.evaluate(
        """async ([bad, good]) => {
            const { h } = await import('/static/js/dom.js');
            const out = {};
            for (const url of [...bad, ...good]) {
              out[url] = {
                href: h('a', { href: url }, 'x').getAttribute('href'),
                src: h('source', { src: url }).getAttribute('src'),  // a detached <source> loads nothing
              };
            }
            return out;
        }""",
        [BAD_URLS, GOOD_URLS],
    )
    for url in BAD_URLS:
        assert result[url]["href"] is None, (url, result[url])
        if not url.startswith("data:"):  # data: images may load (not a link), nothing else
            assert result[url]["src"] is None, (url, result[url])
    for url in GOOD_URLS:
        assert result[url] == {"href": url, "src": url}, (url, result[url])
    assert elsewhere == []
    page.context.close()
    page_errors.check()


def test_links_are_only_built_through_the_dom_helper() -> None:
    """No script sets a URL attribute or HTML by itself, bypassing ``h()``'s check."""
    bypasses = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\.href\s*=|\.src\s*=|setAttribute\(\s*['\"](href|src|action)")
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted(STATIC_JS.glob("*.js"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if bypasses.search(line) and not line.lstrip().startswith("//")
    ]
    assert found == [], found
