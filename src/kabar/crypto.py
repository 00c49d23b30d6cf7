"""Secrets at rest (AES-256-GCM) and password hashing (argon2id)."""

from __future__ import annotations

import functools
import hmac
import json
import os
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = b"\x01"
_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters


@functools.cache
def _dummy_hash() -> str:
    """Verifying against this keeps login time the same whether or not the email exists.
    Made on first use: hashing costs about half a second of CPU, which every CLI command and
    worker start would otherwise pay at import."""
    return _hasher.hash("kabar-timing-equaliser")


class Cipher:
    """Encrypts small secrets (API keys, webhook secrets) with a random nonce per value."""

    def __init__(self, key: bytes):
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: bytes, associated: bytes = b"") -> bytes:
        nonce = os.urandom(12)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, associated)

    def decrypt(self, blob: bytes, associated: bytes = b"") -> bytes:
        if not blob or blob[:1] != _VERSION:
            raise ValueError("unknown ciphertext version")
        return self._aead.decrypt(blob[1:13], blob[13:], associated)

    def encrypt_json(self, value: dict[str, Any], associated: str = "") -> bytes:
        return self.encrypt(json.dumps(value, separators=(",", ":")).encode(), associated.encode())

    def decrypt_json(self, blob: bytes | None, associated: str = "") -> dict[str, Any]:
        if not blob:
            return {}
        return json.loads(self.decrypt(bytes(blob), associated.encode()))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def constant_time_equals(a: str | bytes, b: str | bytes) -> bool:
    if isinstance(a, str):
        a = a.encode()
    if isinstance(b, str):
        b = b.encode()
    return hmac.compare_digest(a, b)
