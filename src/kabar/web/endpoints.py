"""The web inbox: HTML page shells and static files.

Pages are server-rendered Jinja2 shells (navigation, workspace switcher, forms); the data-heavy
parts (conversation list, thread, contact panel, tables, charts) are drawn in the browser by small
ES modules under ``static/js`` that call the same JSON API as every other client, with the session
cookie and the ``X-CSRF-Token`` header. So the UI adds no second read path to the data: what the
API returns and what the realtime socket sends is what the page shows.

No htmx: every write in the UI goes to a JSON endpoint that answers JSON or problem+json, which a
20-line ``fetch`` wrapper handles (field errors included); htmx would need HTML-fragment twins of
the API or an extension plus custom error handling, for no gain.

Every HTML response carries a strict Content-Security-Policy: scripts and styles only from this
origin, no inline code, so user text that slips into markup could not run anyway.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar import Request, Response, get
from litestar.datastructures import CacheControlHeader
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect
from litestar.static_files import create_static_files_router

from kabar.auth import repository as auth_repo
from kabar.auth.permissions import Role
from kabar.auth.service import user_json
from kabar.contacts.schemas import LEAD_STATUSES
from kabar.demo import DEMO_EMAIL
from kabar.errors import Problem
from kabar.http import SESSION_COOKIE, runtime_of
from kabar.observability.middleware import CSP
from kabar.workspaces.service import workspaces_of_user

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

LEAD_LABELS = {
    "prospect": "Prospect",
    "hot_lead": "Hot lead",
    "cold_lead": "Cold lead",
    "client": "Client",
    "student": "Student",
    "alumni": "Alumni",
    "lost": "Lost",
}
HTML_HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-store"}

# Settings sections: (slug, title, who may open it). Members see only the read-only ones.
SETTINGS_SECTIONS = [
    ("workspace", "Workspace", "managers"),
    ("channel", "WhatsApp channel", "managers"),
    ("members", "Members & invitations", "people"),
    ("api-keys", "API keys", "managers"),
    ("webhooks", "Webhooks", "managers"),
    ("ari", "ARI persona", "managers"),
    ("ari-scoring", "ARI scoring", "managers"),
    ("ari-flow", "ARI flow stages", "managers"),
    ("ari-knowledge", "ARI knowledge", "managers"),
    ("ari-slots", "ARI consultation slots", "managers"),
]
_SECTION_SLUGS = {slug for slug, _, _ in SETTINGS_SECTIONS}


@cache
def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["asset"] = asset_url
    env.globals["LEAD_STATUSES"] = [(value, LEAD_LABELS[value]) for value in LEAD_STATUSES]
    return env


@cache
def _asset_version() -> str:
    """One hash of all static files: a changed file gets a new URL, so caches never serve stale code."""
    digest = hashlib.sha256()
    for path in sorted(STATIC.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(STATIC).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def asset_url(path: str) -> str:
    return f"/static/{path}?v={_asset_version()}"


def render(template: str, status: int = 200, **context: Any) -> Response[str]:
    html = _env().get_template(template).render(**context)
    return Response(html, status_code=status, media_type="text/html", headers=HTML_HEADERS)


def _login_redirect(request: Request) -> Redirect:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return Redirect(f"/login?next={quote(target, safe='')}", status_code=303)


def _safe_next(value: str | None) -> str | None:
    """Only same-origin paths. Browsers drop tabs and newlines from URLs and read ``\\`` as ``/``,
    so ``/%09/evil.example`` and ``/\\evil.example`` mean ``//evil.example``: an open redirect,
    like ``https://…`` and ``javascript:…``. Anything but a plain path goes to the inbox."""
    if not value or not value.startswith("/") or value.startswith("//"):
        return None
    if "\\" in value or any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    return value


async def _session_user(request: Request) -> tuple[dict[str, Any], list[Any]] | None:
    """The signed-in user and their workspaces, from the session cookie; None when signed out."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    runtime = runtime_of(request)
    try:
        principal, _ = await runtime.auth.resolve(token, workspace_id=None, via_cookie=True)
    except Problem:
        return None
    if principal.user_id is None:
        return None

    def _load(conn):  # noqa: ANN001, ANN202
        user = auth_repo.user_by_id(conn, principal.user_id)
        return (user_json(user), workspaces_of_user(conn, user.id)) if user else None

    return await runtime.db.read(_load)


def _find_workspace(workspaces: list[Any], ws: str) -> Any:
    """``ws`` in a page URL is the workspace slug (readable links) or its id."""
    for workspace in workspaces:
        if ws in (workspace.slug, workspace.id):
            return workspace
    return None


def _page_context(user: dict[str, Any], workspaces: list[Any], workspace: Any, page: str, **extra: Any) -> dict[str, Any]:
    role = workspace.role
    managers = role in (Role.OWNER, Role.ADMIN)
    sections = [
        {"slug": slug, "title": title}
        for slug, title, who in SETTINGS_SECTIONS
        if who == "people" or managers
    ]
    return {
        "user": user,
        "workspaces": workspaces,
        "workspace": workspace,
        "role": role,
        "is_manager": managers,
        "page": page,
        "settings_sections": sections,
        **extra,
    }


# -- public pages -----------------------------------------------------------------------------


@get("/", include_in_schema=False)
async def home(request: Request) -> Response[Any]:
    session = await _session_user(request)
    if session is None:
        return Redirect("/login", status_code=303)
    _, workspaces = session
    if not workspaces:
        return Redirect("/account", status_code=303)
    return Redirect(f"/w/{workspaces[0].slug}/inbox", status_code=303)


@get("/login", include_in_schema=False)
async def login_page(request: Request, next: FromQuery[str | None] = None) -> Response[Any]:  # noqa: A002
    target = _safe_next(next)
    if await _session_user(request) is not None:
        return Redirect(target or "/", status_code=303)
    # The demo's login is public knowledge (printed by `kabar seed --demo`): say it on the page.
    demo_email = DEMO_EMAIL if runtime_of(request).settings.demo else None
    return render("login.html", next=target or "/", demo_email=demo_email)


@get("/accept-invite", include_in_schema=False)
async def accept_invite_page(request: Request, token: FromQuery[str | None] = None) -> Response[str]:
    """New address: a name-and-password form. An address with an account: accept with one click
    when signed in as it, else a sign-in link that comes back here."""
    from kabar.workspaces.service import invitation_preview

    preview = await runtime_of(request).db.read(invitation_preview, token) if token else None
    session = await _session_user(request) if preview and preview["account_exists"] else None
    return render(
        "accept_invite.html",
        token=token or "",
        invitation=preview,
        signed_in_as=session[0]["email"] if session else None,
        login_url=_login_url(request),
    )


def _login_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/login?next={quote(target, safe='')}"


@get("/forgot-password", include_in_schema=False)
async def forgot_password_page() -> Response[str]:
    return render("forgot_password.html")


@get("/reset-password", include_in_schema=False)
async def reset_password_page(token: FromQuery[str | None] = None) -> Response[str]:
    return render("reset_password.html", token=token or "")


@get("/verify-email", include_in_schema=False)
async def verify_email_page(request: Request, token: FromQuery[str | None] = None) -> Response[Any]:
    """The link from the mail: confirming needs the account's own session (sign in, come back)."""
    session = await _session_user(request)
    if session is None:
        return render("verify_email.html", token=token or "", user=None, login_url=_login_url(request))
    user, workspaces = session
    return render("verify_email.html", token=token or "", user=user, workspaces=workspaces, workspace=None, page="account", settings_sections=[])


@get("/account", include_in_schema=False)
async def account_page(request: Request) -> Response[Any]:
    session = await _session_user(request)
    if session is None:
        return _login_redirect(request)
    user, workspaces = session
    idp = runtime_of(request).auth.idp.configured
    return render("account.html", user=user, workspaces=workspaces, workspace=None, page="account", settings_sections=[], idp=idp)


# -- workspace pages --------------------------------------------------------------------------


async def _workspace_page(request: Request, ws: str, template: str, page: str, **extra: Any) -> Response[Any]:
    session = await _session_user(request)
    if session is None:
        return _login_redirect(request)
    user, workspaces = session
    workspace = _find_workspace(workspaces, ws)
    if workspace is None:
        # Another workspace, or none: the same answer either way (no existence leak).
        return render("not_found.html", status=404, user=user, workspaces=workspaces, workspace=None, page="", settings_sections=[])
    return render(template, **_page_context(user, workspaces, workspace, page, **extra))


@get("/w/{ws:str}", include_in_schema=False)
async def workspace_root(ws: FromPath[str]) -> Redirect:
    return Redirect(f"/w/{quote(ws)}/inbox", status_code=303)


@get("/w/{ws:str}/inbox", include_in_schema=False)
async def inbox_page(request: Request, ws: FromPath[str]) -> Response[Any]:
    return await _workspace_page(request, ws, "inbox.html", "inbox")


@get("/w/{ws:str}/contacts", include_in_schema=False)
async def contacts_page(request: Request, ws: FromPath[str]) -> Response[Any]:
    return await _workspace_page(request, ws, "contacts.html", "contacts")


@get("/w/{ws:str}/contacts/import", include_in_schema=False)
async def import_page(request: Request, ws: FromPath[str]) -> Response[Any]:
    return await _workspace_page(request, ws, "import.html", "contacts")


@get("/w/{ws:str}/dashboard", include_in_schema=False)
async def dashboard_page(request: Request, ws: FromPath[str]) -> Response[Any]:
    return await _workspace_page(request, ws, "dashboard.html", "dashboard")


@get("/w/{ws:str}/settings", include_in_schema=False)
async def settings_root(request: Request, ws: FromPath[str]) -> Response[Any]:
    session = await _session_user(request)
    if session is None:
        return _login_redirect(request)
    workspace = _find_workspace(session[1], ws)
    first = "workspace" if workspace is not None and workspace.role in (Role.OWNER, Role.ADMIN) else "members"
    return Redirect(f"/w/{quote(ws)}/settings/{first}", status_code=303)


@get("/w/{ws:str}/settings/{section:str}", include_in_schema=False)
async def settings_page(request: Request, ws: FromPath[str], section: FromPath[str]) -> Response[Any]:
    if section not in _SECTION_SLUGS:
        return render("not_found.html", status=404, user=None, workspaces=[], workspace=None, page="", settings_sections=[])
    title = next(title for slug, title, _ in SETTINGS_SECTIONS if slug == section)
    return await _workspace_page(request, ws, "settings.html", "settings", section=section, section_title=title)


def _static_router() -> Any:
    # no-cache = revalidate each time; page <script> URLs carry a content hash (asset_url).
    return create_static_files_router(
        path="/static",
        directories=[STATIC],
        cache_control=CacheControlHeader(no_cache=True),
        include_in_schema=False,
    )


ROUTES = [
    home,
    login_page,
    accept_invite_page,
    forgot_password_page,
    reset_password_page,
    verify_email_page,
    account_page,
    workspace_root,
    inbox_page,
    contacts_page,
    import_page,
    dashboard_page,
    settings_root,
    settings_page,
    _static_router(),
]
