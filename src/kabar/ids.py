"""Identifiers: opaque, time-ordered strings (UUIDv7), and secret tokens."""

from __future__ import annotations

import hashlib
import secrets

import uuid_utils


def new_id() -> str:
    """A time-ordered UUIDv7 as text: sorts by creation time, which keyset pagination relies on."""
    return str(uuid_utils.uuid7())


def new_token(prefix: str = "", nbytes: int = 32) -> str:
    return prefix + secrets.token_urlsafe(nbytes)


def token_hash(token: str) -> str:
    """Tokens are stored as SHA-256: high-entropy secrets need no slow hash, and lookups stay indexed."""
    return hashlib.sha256(token.encode()).hexdigest()
