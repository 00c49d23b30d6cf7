"""The page routes over HTTP (no browser): who gets which page, the security headers, and the
static files the pages load. Both backends."""

from __future__ import annotations

import re

from tests.helpers import PASSWORD, Tenant, make_tenant


async def session_cookie(client, tenant: Tenant) -> dict[str, str]:  # noqa: ANN001
    """A browser's Cookie header after the tenant's owner logs in (the shared client keeps no cookies)."""
    response = await client.post("/v1/auth/login", json={"email": tenant.owner.email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Cookie": f"kabar_session={response.json()['token']}"}


async def test_signed_out_pages_redirect_to_login(client) -> None:  # noqa: ANN001
    for path in ("/", "/w/some-workspace/inbox", "/w/x/contacts", "/w/x/settings/members", "/account"):
        response = await client.get(path)
        assert response.status_code == 303, (path, response.status_code)
        assert response.headers["location"].startswith("/login"), response.headers["location"]
    response = await client.get("/w/abc/dashboard?x=1")
    assert response.headers["location"] == "/login?next=%2Fw%2Fabc%2Fdashboard%3Fx%3D1"


async def test_html_pages_carry_a_strict_csp(client) -> None:  # noqa: ANN001
    response = await client.get("/login")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["cache-control"] == "no-store"
    # No inline script or style anywhere in the markup: everything comes from /static.
    assert not re.search(r"<script(?![^>]*\bsrc=)", response.text)
    assert " style=" not in response.text and "<style" not in response.text


async def test_login_next_only_goes_to_this_site(client) -> None:  # noqa: ANN001
    for target in ("//evil.example/x", "https://evil.example", "/\\evil.example"):
        page = await client.get("/login", params={"next": target})
        assert 'data-next="/"' in page.text, target
    page = await client.get("/login", params={"next": "/w/demo/contacts"})
    assert 'data-next="/w/demo/contacts"' in page.text


async def test_workspace_pages_for_members_only(client) -> None:  # noqa: ANN001
    mine = await make_tenant(client)
    other = await make_tenant(client)
    cookie = await session_cookie(client, mine)
    me = (await client.get("/v1/me", headers=cookie)).json()
    slug = next(w["slug"] for w in me["workspaces"] if w["id"] == mine.ws)
    for path in ("inbox", "contacts", "contacts/import", "dashboard", "settings/workspace", "settings/ari-slots"):
        by_slug = await client.get(f"/w/{slug}/{path}", headers=cookie)
        assert by_slug.status_code == 200, (path, by_slug.status_code)
        assert f'data-ws="{mine.ws}"' in by_slug.text
    assert (await client.get(f"/w/{mine.ws}/inbox", headers=cookie)).status_code == 200  # the id works too
    # Another workspace's pages: the same 404 as a workspace that does not exist.
    assert (await client.get(f"/w/{other.ws}/inbox", headers=cookie)).status_code == 404
    assert (await client.get("/w/no-such-workspace/inbox", headers=cookie)).status_code == 404
    assert (await client.get(f"/w/{slug}/settings/nonsense", headers=cookie)).status_code == 404
    home = await client.get("/", headers=cookie)
    assert home.status_code == 303 and home.headers["location"].startswith("/w/")


async def test_static_files_are_served_as_modules(client) -> None:  # noqa: ANN001
    page = await client.get("/login")
    scripts = re.findall(r'<script type="module" src="([^"]+)"', page.text)
    assert scripts and all("?v=" in s for s in scripts)
    for path in [*scripts, "/static/js/inbox.js", "/static/js/api.js", "/static/realtime.js", "/static/css/app.css"]:
        response = await client.get(path)
        assert response.status_code == 200, path
        expected = "text/css" if path.endswith(".css") or ".css?" in path else "javascript"
        assert expected in response.headers["content-type"], (path, response.headers["content-type"])
    assert (await client.get("/static/../endpoints.py")).status_code == 404
