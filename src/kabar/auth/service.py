"""Authentication: passwords, sessions, API keys and IdP tokens resolved to a ``Principal``."""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import hmac
import logging
import time
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from kabar.auth import cache as credential_cache
from kabar.auth import repository as repo
from kabar.auth.cache import CredentialCache, credentials_changed
from kabar.auth.idp import IdentityProvider, InvalidToken
from kabar.auth.permissions import Role
from kabar.auth.scope import Principal, Scope
from kabar.config import Settings
from kabar.crypto import constant_time_equals, hash_password, verify_password
from kabar.db.engine import Database
from kabar.db.types import utcnow
from kabar.db.uow import UnitOfWork
from kabar.errors import Problem, conflict, forbidden, invalid, not_found, unauthorized
from kabar.ids import new_token, token_hash

log = logging.getLogger("kabar.auth")

SESSION_PREFIX = "kst_"
API_KEY_PREFIX = "kbr_"
MIN_PASSWORD_LENGTH = 8


PASSWORD_RESET = "password_reset"
VERIFY_EMAIL = "verify_email"
PASSWORD_RESET_TTL = timedelta(hours=1)
VERIFY_EMAIL_TTL = timedelta(days=3)
PASSWORD_RESET_JOB = "auth.password_reset"


def user_json(row: Any) -> dict[str, Any]:
    return {"id": row.id, "email": row.email, "name": row.name, "email_verified": row.email_verified_at is not None}


def validate_password(password: str, field: str = "password") -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise invalid(field, f"must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > 1024:
        raise invalid(field, "must be at most 1024 characters")


def create_user(uow: UnitOfWork, *, email: str, password: str | None, name: str = "", verified: bool = True) -> str:
    """A new user. ``verified``: an operator vouches for the address (``kabar user create``, the
    demo seed); accounts made by a person through an invitation pass False and get a link by mail."""
    email = email.strip().lower()
    if "@" not in email or len(email) > 320:
        raise invalid("email", "is not an email address")
    if password is not None:
        validate_password(password)
    if repo.user_by_email(uow.conn, email) is not None:
        raise conflict(f"A user with email {email} already exists", slug="user-exists")
    return repo.insert_user(
        uow.conn,
        email=email,
        name=name.strip() or email.split("@")[0],
        password_hash=hash_password(password) if password else None,
        now=uow.now,
        verified=verified,
    )


def login(uow: UnitOfWork, settings: Settings, *, email: str, password: str, user_agent: str | None) -> dict[str, Any]:
    user = repo.user_by_email(uow.conn, email.strip())
    # verify_password runs the hash even for unknown emails, so timing does not reveal accounts.
    if not verify_password(user.password_hash if user else None, password) or not user or not user.is_active:
        raise unauthorized("Wrong email or password")
    token = new_token(SESSION_PREFIX)
    repo.insert_session(
        uow.conn,
        user_id=user.id,
        token_hash=token_hash(token),
        user_agent=user_agent,
        now=uow.now,
        expires_at=uow.now + timedelta(hours=settings.session_ttl_hours),
    )
    return {"token": token, "user": user_json(user), "expires_at": uow.now + timedelta(hours=settings.session_ttl_hours)}


def logout(uow: UnitOfWork, principal: Principal) -> None:
    if principal.session_id:
        repo.revoke_session(uow.conn, principal.session_id, uow.now)
        credentials_changed(uow)


def change_password(uow: UnitOfWork, user_id: str, *, current: str, new: str, keep_session_id: str | None = None) -> None:
    """Set a new password and sign out every other session (a stolen one must not outlive it)."""
    user = repo.user_by_id(uow.conn, user_id)
    if user is None or not verify_password(user.password_hash, current):
        raise invalid("current_password", "is wrong")
    validate_password(new, "new_password")
    repo.set_password(uow.conn, user_id, hash_password(new), uow.now)
    repo.revoke_sessions(uow.conn, user_id, uow.now, keep_session_id=keep_session_id)
    credentials_changed(uow)


# -- emailed single-use links: password reset, email verification -----------------------------
#
# The rule they keep: only someone who reads the account's mailbox gets a credential from them.
# Tokens are "<id>.<secret>" (the id finds the row, the SHA-256 of the secret proves it), single
# use, expiring, and void when the account's address is no longer the one they were sent to.


def _issue_token(uow: UnitOfWork, user: Any, purpose: str, ttl: timedelta) -> str:
    repo.void_account_tokens(uow.conn, user.id, purpose, uow.now)  # only the newest link works
    secret = new_token(nbytes=32)
    token_id = repo.insert_account_token(
        uow.conn, user_id=user.id, purpose=purpose, email=user.email, secret_hash=token_hash(secret), now=uow.now, expires_at=uow.now + ttl
    )
    return f"{token_id}.{secret}"


def _valid_token(uow: UnitOfWork, token: str, purpose: str) -> tuple[Any, Any]:
    """(token row, its user) for a live token; 404 for a wrong one, 410 for a used or expired one."""
    token_id, _, secret = token.partition(".")
    row = repo.account_token(uow.conn, token_id, purpose) if secret else None
    if row is None or not constant_time_equals(row.secret_hash, token_hash(secret)):
        raise Problem(404, "link-invalid", "Link not valid", "This link is not valid. Copy the whole link from the mail, or ask for a new one.")
    user = repo.user_by_id(uow.conn, row.user_id)
    if row.used_at is not None or row.expires_at < uow.now or user is None or not user.is_active or user.email != row.email:
        raise Problem(410, "link-expired", "Link expired", "This link was used already or has expired. Ask for a new one.")
    return row, user


def _use_token(uow: UnitOfWork, row: Any) -> None:
    if not repo.use_account_token(uow.conn, row.id, uow.now):  # a concurrent request used it first
        raise Problem(410, "link-expired", "Link expired", "This link was used already or has expired. Ask for a new one.")


def request_password_reset(uow: UnitOfWork, email: str) -> None:
    """Queue the reset mail. The request does the same work whether or not the address has an
    account (the job looks it up), so neither the answer nor its timing tells who has one."""
    uow.enqueue(PASSWORD_RESET_JOB, {"email": email.strip().lower()[:320]})


def mail_password_reset(uow: UnitOfWork, email: str) -> None:
    """The job's half: a reset link to an existing, active account; nothing for unknown addresses."""
    from kabar.mail.service import link, queue_mail

    user = repo.user_by_email(uow.conn, email)
    if user is None or not user.is_active:
        return
    token = _issue_token(uow, user, PASSWORD_RESET, PASSWORD_RESET_TTL)
    url = link(uow.db.settings, "/reset-password", token=token)
    queue_mail(
        uow,
        to=user.email,
        subject="Reset your Kabar password",
        kind=PASSWORD_RESET,
        body=(
            f"Hello {user.name},\n\n"
            "Someone (hopefully you) asked to reset the password of your Kabar account. Choose a new one here:\n\n"
            f"{url}\n\n"
            f"The link works once and expires in {int(PASSWORD_RESET_TTL.total_seconds() // 60)} minutes. "
            "Using it signs out every session of the account.\n"
            "If you did not ask for this, ignore this mail: your password stays as it is.\n"
        ),
    )


def confirm_password_reset(uow: UnitOfWork, token: str, password: str) -> None:
    """Set the password from an emailed link; every session of the account is signed out.

    Using the link proves the mailbox. If the address was not verified until now, whoever set
    the account up may not be its owner (someone accepted an invitation, or an identity provider
    vouched for nothing): the identity-provider links made before go too, and the address counts
    as verified from now on."""
    validate_password(password)
    row, user = _valid_token(uow, token, PASSWORD_RESET)
    _use_token(uow, row)
    repo.void_account_tokens(uow.conn, user.id, PASSWORD_RESET, uow.now)
    repo.set_password(uow.conn, user.id, hash_password(password), uow.now)
    repo.revoke_sessions(uow.conn, user.id, uow.now)
    if user.email_verified_at is None:
        repo.mark_email_verified(uow.conn, user.id, uow.now)
        repo.unlink_identities(uow.conn, user.id)
        repo.void_account_tokens(uow.conn, user.id, VERIFY_EMAIL, uow.now)
    credentials_changed(uow)


def send_verification_mail(uow: UnitOfWork, user: Any) -> None:
    from kabar.mail.service import link, queue_mail

    token = _issue_token(uow, user, VERIFY_EMAIL, VERIFY_EMAIL_TTL)
    url = link(uow.db.settings, "/verify-email", token=token)
    queue_mail(
        uow,
        to=user.email,
        subject="Confirm your email address for Kabar",
        kind=VERIFY_EMAIL,
        body=(
            f"Hello {user.name},\n\n"
            "Confirm that this is your address: open the link below while signed in to your Kabar account.\n\n"
            f"{url}\n\n"
            f"The link expires in {VERIFY_EMAIL_TTL.days} days. If you have no Kabar account, ignore this mail.\n"
        ),
    )


def resend_verification(uow: UnitOfWork, user_id: str) -> None:
    user = repo.user_by_id(uow.conn, user_id)
    if user is None:
        raise not_found("User")
    if user.email_verified_at is not None:
        raise conflict("Your email address is verified already", slug="already-verified")
    send_verification_mail(uow, user)


def verify_email(uow: UnitOfWork, user_id: str, token: str) -> None:
    """Mark the address verified. Only in a session of the account the link was sent for: a
    link clicked by someone else must not vouch for an account they do not hold."""
    row, user = _valid_token(uow, token, VERIFY_EMAIL)
    if user.id != user_id:
        raise forbidden(f"This link confirms {row.email}. Sign in as {row.email}, then open the link again.")
    _use_token(uow, row)
    if user.email_verified_at is None:
        repo.mark_email_verified(uow.conn, user.id, uow.now)


# -- identity-provider links ------------------------------------------------------------------


def identity_of(claims: dict[str, Any]) -> tuple[str, str]:
    """(issuer, subject) of a verified IdP token."""
    return str(claims.get("iss") or "default"), str(claims["sub"])


def email_verified_claim(claims: dict[str, Any]) -> bool:
    """Only the top-level ``email_verified: true`` counts. (Supabase's ``user_metadata`` is
    writable by the user, so its ``email_verified`` proves nothing.)"""
    return claims.get("email_verified") is True


def link_identity_to(uow: UnitOfWork, user_id: str, issuer: str, subject: str) -> dict[str, Any]:
    """A signed-in user links an IdP sign-in they hold (they proved both) to their account."""
    user = repo.user_by_id(uow.conn, user_id)
    if user is None:
        raise not_found("User")
    if user.email_verified_at is None:
        raise conflict(
            "Confirm your email address first (use the link we mailed you, or send a new one from your account page); then link this sign-in.",
            slug="email-unverified",
        )
    existing = repo.identity_user(uow.conn, issuer, subject)
    if existing is not None and existing.id != user_id:
        raise conflict("This sign-in is linked to another Kabar account already", slug="identity-taken")
    if existing is None:
        repo.link_identity(uow.conn, user_id=user_id, issuer=issuer, subject=subject, now=uow.now)
    return {"issuer": issuer, "subject": subject}


def identities_json(conn: Any, user_id: str) -> list[dict[str, Any]]:
    return [{"issuer": r.issuer, "subject": r.subject, "created_at": r.created_at} for r in repo.identities_of(conn, user_id)]


def csrf_token_for(settings: Settings, session_token: str) -> str:
    """Double-submit CSRF token bound to the session: no storage, unguessable without the cookie."""
    return hmac.new(settings.secret_key.encode(), b"csrf:" + session_token.encode(), hashlib.sha256).hexdigest()


def make_api_key_secret(key_id: str) -> str:
    return f"{API_KEY_PREFIX}{key_id.replace('-', '')}_{new_token(nbytes=24)}"


def parse_api_key(token: str) -> tuple[str, str] | None:
    """``kbr_<id hex>_<secret>`` → (id, token); the id locates the row, the hash proves the secret."""
    body = token[len(API_KEY_PREFIX) :]
    hex_id, sep, _ = body.partition("_")
    if not sep or len(hex_id) != 32:
        return None
    try:
        int(hex_id, 16)
    except ValueError:
        return None
    key_id = f"{hex_id[:8]}-{hex_id[8:12]}-{hex_id[12:16]}-{hex_id[16:20]}-{hex_id[20:]}"
    return key_id, token


class Authenticator:
    """Turns a bearer token (or session cookie) into a Principal and, for a workspace, a Scope."""

    def __init__(self, settings: Settings, db: Database, idp: IdentityProvider):
        self.settings = settings
        self.db = db
        self.idp = idp
        self.cache = CredentialCache(settings.auth_cache_seconds)
        self.key_usage = KeyUsage(db)
        db.on_commit(credential_cache.after_commit)

    async def resolve(self, token: str, *, workspace_id: str | None, via_cookie: bool = False) -> tuple[Principal, Role | None]:
        """The caller and their role in ``workspace_id`` (None if not a member); 401 if invalid.
        API keys and sessions are answered from ``self.cache`` when they were resolved lately."""
        key = (token, workspace_id, via_cookie)
        resolved = self.cache.get(key)
        if resolved is not None:
            if resolved[0].api_key_id is not None:
                self.key_usage.used(resolved[0].api_key_id)
            return resolved
        generation = self.cache.generation()
        if token.startswith(API_KEY_PREFIX):
            resolved = await self.db.read(self._api_key, token, workspace_id)
            valid_for = None
            self.key_usage.used(resolved[0].api_key_id)
        elif token.startswith(SESSION_PREFIX):
            resolved, valid_for = await self.db.read(self._session, token, workspace_id, via_cookie)
        elif token.count(".") == 2:
            return await self._jwt(token, workspace_id)
        else:
            raise unauthorized("Unrecognised credentials")
        if workspace_id is None or resolved[1] is not None:  # "not a member" is not remembered
            self.cache.put(key, resolved, generation, valid_for=valid_for)
        return resolved

    def _session(self, conn, token: str, workspace_id: str | None, via_cookie: bool):  # noqa: ANN001
        """(principal, role) and the seconds until the session expires."""
        now = utcnow()
        row = repo.session_with_role(conn, token_hash(token), workspace_id, now)
        if row is None or not row.is_active:
            raise unauthorized("Session expired or signed out")
        principal = Principal("session", user_id=row.user_id, session_id=row.session_id, via_cookie=via_cookie)
        role = getattr(row, "role", None)
        return (principal, Role(role) if role else None), (row.expires_at - now).total_seconds()

    def _api_key(self, conn, token: str, workspace_id: str | None):  # noqa: ANN001
        parsed = parse_api_key(token)
        row = repo.api_key_by_id(conn, parsed[0]) if parsed else None
        if row is None or row.revoked_at is not None or not constant_time_equals(row.secret_hash, token_hash(token)):
            raise unauthorized("Invalid or revoked API key")
        principal = Principal("api_key", api_key_id=row.id, api_key_workspace_id=row.workspace_id)
        return principal, Role.API if workspace_id == row.workspace_id else None

    async def _jwt(self, token: str, workspace_id: str | None) -> tuple[Principal, Role | None]:
        try:
            claims = await self.idp.verify(token)
        except InvalidToken as exc:
            raise unauthorized(f"Invalid token: {exc}") from exc
        issuer, subject = identity_of(claims)
        email = claims.get("email")

        def _lookup(conn):  # noqa: ANN001, ANN202
            user = repo.identity_user(conn, issuer, subject)
            role = repo.member_role(conn, workspace_id, user.id) if user and workspace_id else None
            return user, role

        user, role = await self.db.read(_lookup)
        if user is None:
            try:
                await self.db.transaction(_link_or_provision, issuer, subject, email, email_verified_claim(claims))
            except IntegrityError:
                pass  # a concurrent first request of the same subject linked it; use theirs
            user, role = await self.db.read(_lookup)
            if user is None:
                raise unauthorized("Token has no user in Kabar")
        if not user.is_active:
            raise unauthorized("User is disabled")
        return Principal("jwt", user_id=user.id), Role(role) if role else None

    async def scope(self, token: str, workspace_id: str, *, via_cookie: bool = False) -> Scope:
        principal, role = await self.resolve(token, workspace_id=workspace_id, via_cookie=via_cookie)
        if role is None:
            # Not a member (or another workspace's key): the workspace does not exist for them.
            raise not_found("Workspace")
        return Scope(workspace_id, role, principal)


class KeyUsage:
    """Keeps ``api_keys.last_used_at`` current to the minute without a write per request: a key's
    use is written in the background when this process has not written it for ``RESOLUTION``."""

    RESOLUTION = 60.0  # seconds

    def __init__(self, db: Database):
        self.db = db
        self._written: dict[str, float] = {}  # key id -> monotonic time of its last write
        self._writes: set[asyncio.Task[None]] = set()  # held so they are not collected mid-flight

    def used(self, key_id: str) -> None:
        now = time.monotonic()
        last = self._written.get(key_id)
        if last is not None and now - last < self.RESOLUTION:
            return
        if len(self._written) >= 10_000:  # keys are few; bound it anyway
            self._written.clear()
        self._written[key_id] = now
        # A fresh context: the write is not part of the request (its query count, its request id).
        task = asyncio.create_task(self._write(key_id), context=contextvars.Context())
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def drain(self) -> None:
        """At shutdown: let the writes in flight finish."""
        await asyncio.gather(*self._writes, return_exceptions=True)

    async def _write(self, key_id: str) -> None:
        try:
            await self.db.transaction(lambda uow: repo.touch_api_key(uow.conn, key_id, uow.now))
        except Exception as exc:  # noqa: BLE001 - a missed "last used" must never fail a request
            self._written.pop(key_id, None)  # try again on the next use
            log.warning("could not record the use of API key %s: %s", key_id, exc)


def _link_or_provision(uow: UnitOfWork, issuer: str, subject: str, email: str | None, email_verified: bool) -> Any:
    """First sight of an IdP subject: link it to the user with that email, or create one.

    Linking by email hands the account to whoever holds the IdP sign-in, so it happens only when
    both sides proved the address: the token says ``email_verified: true`` and the Kabar account's
    address is verified. Otherwise the person links from their account page (signed in to both)."""
    user = repo.identity_user(uow.conn, issuer, subject)
    if user is not None:
        return user
    if not email:
        raise unauthorized("Token has no user in Kabar and no email claim to create one")
    email = str(email).strip().lower()
    user = repo.user_by_email(uow.conn, email)
    if user is not None and not (email_verified and user.email_verified_at is not None):
        # A concurrent first request of this subject may have created that very account since
        # the first look (statements see newer commits): then it is theirs already.
        linked = repo.identity_user(uow.conn, issuer, subject)
        if linked is not None:
            return linked
        raise Problem(
            403,
            "identity-not-linked",
            "Sign-in not linked to a Kabar account",
            f"A Kabar account for {email} exists, but this sign-in cannot be linked to it automatically "
            "(the identity provider did not confirm the address, or the Kabar account has not confirmed it). "
            "Sign in to Kabar with your password (or reset it by email at /forgot-password), then link this "
            "sign-in on your account page (/account).",
            extra={"link_url": "/account", "reset_url": "/forgot-password"},
        )
    user_id = user.id if user else repo.insert_user(
        uow.conn, email=email, name=email.split("@")[0], password_hash=None, now=uow.now, verified=email_verified
    )
    repo.link_identity(uow.conn, user_id=user_id, issuer=issuer, subject=subject, now=uow.now)
    return repo.user_by_id(uow.conn, user_id)
