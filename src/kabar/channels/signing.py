"""HMAC-SHA256 webhook signatures, computed on the raw body bytes and compared in constant time.

Kapso sends ``X-Webhook-Signature: <hex>``; Meta sends ``X-Hub-Signature-256: sha256=<hex>``.
Both are accepted with or without the ``sha256=`` prefix and in either hex case.
"""

from __future__ import annotations

import hashlib
import hmac


def sign(secret: str, raw: bytes) -> str:
    return hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def matches(raw: bytes, secret: str | None, header: str | None) -> bool:
    if not secret or not header:
        return False
    candidate = header.strip()
    algo, sep, digest = candidate.partition("=")
    if sep:
        if algo.lower() != "sha256":
            return False
        candidate = digest
    return hmac.compare_digest(candidate.lower().encode(), sign(secret, raw).encode())
