"""Channel configuration: one WhatsApp connection per workspace, secrets encrypted at rest.

Secrets are one AES-GCM blob per channel (``kabar.crypto.Cipher``) bound to the workspace id as
associated data, so a blob copied into another workspace's row does not decrypt. They are
write-only through the API and never logged: ``Secrets`` masks itself in ``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from kabar import egress
from kabar.auth.scope import Scope, system_scope
from kabar.channels import repository as repo
from kabar.channels import schemas as s
from kabar.config import Settings
from kabar.crypto import Cipher
from kabar.db.uow import UnitOfWork
from kabar.errors import conflict, invalid, invalid_fields, not_found
from kabar.events import payload

DEFAULT_API_BASE = {
    "kapso": "https://api.kapso.ai/meta/whatsapp/v24.0",
    "meta": "https://graph.facebook.com/v24.0",
}
# What each provider needs to send (api_key) and to authenticate what it posts to us.
REQUIRED_SECRETS = {
    "kapso": ("api_key", "webhook_secret"),
    "meta": ("api_key", "app_secret", "verify_token"),
    "fake": ("webhook_secret",),
}
WEBHOOK_PATH = {"kapso": "/webhooks/kapso", "fake": "/webhooks/kapso", "meta": "/webhooks/meta"}
CHANNEL_UPDATED = "channel.updated"


@dataclass(frozen=True, slots=True)
class Secrets:
    values: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        return self.values.get(name) or None

    def __repr__(self) -> str:  # never print a secret, even in a traceback
        return f"Secrets({', '.join(sorted(self.values))} set)"


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """A channel with its secrets decrypted, for the webhook receiver and the sender."""

    workspace_id: str
    provider: str
    phone_number_id: str
    display_phone_number: str | None
    api_base_url: str
    secrets: Secrets


def _aad(workspace_id: str) -> str:
    return f"channel:{workspace_id}"


# Decrypted secrets by (cipher, workspace, encrypted blob), for the webhook receiver, which checks
# every delivery's signature. Saving a channel encrypts again (a fresh nonce, a new blob), so an
# entry never outlives the configuration it was decrypted from; no invalidation is needed.
_decrypted: dict[tuple[Cipher, str, bytes], dict[str, str]] = {}
MAX_DECRYPTED = 1000


def _secrets(cipher: Cipher, row: Any) -> dict[str, str]:
    key = (cipher, row.workspace_id, bytes(row.secrets or b""))
    found = _decrypted.get(key)
    if found is None:
        found = cipher.decrypt_json(row.secrets, _aad(row.workspace_id))
        if len(_decrypted) >= MAX_DECRYPTED:
            _decrypted.clear()
        _decrypted[key] = found
    return dict(found)


def decrypt(cipher: Cipher, row: Any) -> ChannelConfig:
    return ChannelConfig(
        workspace_id=row.workspace_id,
        provider=row.provider,
        phone_number_id=row.phone_number_id,
        display_phone_number=row.display_phone_number,
        api_base_url=(row.api_base_url or DEFAULT_API_BASE.get(row.provider, "")).rstrip("/"),
        secrets=Secrets(_secrets(cipher, row)),
    )


def load(conn: Connection, cipher: Cipher, workspace_id: str) -> ChannelConfig | None:
    row = repo.get(conn, system_scope(workspace_id))
    return decrypt(cipher, row) if row is not None else None


def load_by_phone_number_ids(conn: Connection, cipher: Cipher, phone_number_ids: set[str]) -> dict[str, ChannelConfig]:
    return {row.phone_number_id: decrypt(cipher, row) for row in repo.by_phone_number_ids(conn, phone_number_ids)}


def load_all(conn: Connection, cipher: Cipher, provider: str) -> list[ChannelConfig]:
    return [decrypt(cipher, row) for row in repo.all_of_provider(conn, provider)]


def channel_out(row: Any, secrets: dict[str, str]) -> s.ChannelOut:
    return s.ChannelOut(
        provider=row.provider,
        phone_number_id=row.phone_number_id,
        display_phone_number=row.display_phone_number,
        api_base_url=(row.api_base_url or DEFAULT_API_BASE.get(row.provider, "")).rstrip("/"),
        has_api_key=bool(secrets.get("api_key")),
        has_webhook_secret=bool(secrets.get("webhook_secret")),
        has_app_secret=bool(secrets.get("app_secret")),
        has_verify_token=bool(secrets.get("verify_token")),
        webhook_path=WEBHOOK_PATH[row.provider],
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def get_channel(conn: Connection, ctx: Scope, cipher: Cipher) -> s.ChannelOut:
    ctx.require("channel.read")
    row = repo.get(conn, ctx)
    if row is None:
        raise not_found("Channel")
    return channel_out(row, cipher.decrypt_json(row.secrets, _aad(row.workspace_id)))


def check_base_url_now(url: str, settings: Settings) -> Any:
    """The URL rules for an API base, without DNS (the guarded client checks the addresses it
    connects to): what every provider call checks first. ``EgressRefused`` says why."""
    return egress.check_url(url, allow_private=egress.private_allowed(settings), https_only=True)


async def check_base_url(url: str, settings: Settings) -> str:
    """The save-time check of ``api_base_url`` (the URL rules and where its host resolves to): the
    same functions the provider calls use; 422 naming the field."""
    try:
        return (await egress.validate_url(url, allow_private=egress.private_allowed(settings), https_only=True)).rstrip("/")
    except egress.EgressRefused as exc:
        raise invalid("api_base_url", str(exc)) from None


def _base_url_or_422(url: str, settings: Settings) -> str:
    try:
        check_base_url_now(url, settings)
    except egress.EgressRefused as exc:
        raise invalid("api_base_url", str(exc)) from None
    return url.strip().rstrip("/")


def put_channel(uow: UnitOfWork, ctx: Scope, data: s.ChannelIn, cipher: Cipher, settings: Settings) -> s.ChannelOut:
    ctx.require("channel.manage")
    conn = uow.conn
    existing = repo.get(conn, ctx)
    secrets: dict[str, str] = cipher.decrypt_json(existing.secrets, _aad(ctx.workspace_id)) if existing else {}
    for name in s.SECRET_FIELDS:
        value = getattr(data, name)
        if value is None:
            continue
        if value == "":
            secrets.pop(name, None)
        else:
            secrets[name] = value
    missing = [name for name in REQUIRED_SECRETS[data.provider] if not secrets.get(name)]
    errors = [{"field": name, "message": f"is required for provider {data.provider}"} for name in missing]
    base_url = data.api_base_url if data.api_base_url is not None else (existing.api_base_url if existing else None)
    if data.provider == "fake" and not base_url:
        errors.append({"field": "api_base_url", "message": "is required for provider fake (the fake provider's URL)"})
    if errors:
        raise invalid_fields(errors)
    if base_url:
        base_url = _base_url_or_422(base_url, settings)
    owner = repo.owner_of(conn, data.phone_number_id)
    if owner is not None and owner != ctx.workspace_id:
        raise conflict("This phone_number_id is connected to another workspace", slug="phone-number-id-taken")
    values = {
        "provider": data.provider,
        "phone_number_id": data.phone_number_id,
        "display_phone_number": data.display_phone_number,
        "api_base_url": base_url or None,
        "secrets": cipher.encrypt_json(secrets, _aad(ctx.workspace_id)),
        "updated_at": uow.now,
    }
    if existing is None:
        values["created_at"] = uow.now
    repo.save(conn, ctx, values, exists=existing is not None)
    out = channel_out(repo.get(conn, ctx), secrets)
    uow.emit(ctx.workspace_id, CHANNEL_UPDATED, payload(out))
    return out


def configure(uow: UnitOfWork, workspace_id: str, cipher: Cipher, *, provider: str, phone_number_id: str,
              secrets: dict[str, str], api_base_url: str | None = None, display_phone_number: str | None = None) -> None:
    """Write a channel without an HTTP caller (demo seed, operators' scripts)."""
    scope = system_scope(workspace_id)
    existing = repo.get(uow.conn, scope)
    values: dict[str, Any] = {
        "provider": provider,
        "phone_number_id": phone_number_id,
        "display_phone_number": display_phone_number,
        "api_base_url": api_base_url,
        "secrets": cipher.encrypt_json(secrets, _aad(workspace_id)),
        "updated_at": uow.now,
    }
    if existing is None:
        values["created_at"] = uow.now
    repo.save(uow.conn, scope, values, exists=existing is not None)
