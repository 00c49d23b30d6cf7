"""Bearer JWTs from an external identity provider (Supabase-compatible).

HS256 is accepted only when ``KABAR_JWT_SECRET`` is set, RS256/ES256 only with a JWKS URL: a token
can never pick a weaker algorithm than the one configured (no ``none``, no RS/HS confusion).
Issuer and audience are checked when configured; ``exp`` is always required.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from kabar import egress
from kabar.config import Settings

JWKS_TTL_SECONDS = 300
# An unknown ``kid`` refetches the key set (the IdP rotated keys), at most once per this many
# seconds: a stream of junk tokens must not turn Kabar into a load generator against the IdP.
JWKS_REFRESH_COOLDOWN_SECONDS = 30


class InvalidToken(Exception):
    pass


@dataclass
class _JwksCache:
    keys: dict[str, jwt.PyJWK]
    fetched_at: float


class IdentityProvider:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._jwks: _JwksCache | None = None
        self._attempted_at: float | None = None
        self._fetching = asyncio.Lock()

    @property
    def configured(self) -> bool:
        return bool(self.settings.jwt_secret or self.settings.jwt_jwks_url)

    async def _jwks_keys(self, force: bool = False) -> dict[str, jwt.PyJWK]:
        """The IdP's keys by kid: cached for a TTL; ``force`` (an unknown kid) refetches sooner."""
        if (keys := self._cached(force)) is not None:
            return keys
        async with self._fetching:  # one fetch at a time; the others use its result
            if (keys := self._cached(force)) is not None:
                return keys
            self._attempted_at = time.monotonic()
            assert self.settings.jwt_jwks_url
            try:
                async with egress.client(allow_private=egress.private_allowed(self.settings), timeout=5) as client:  # the egress guard
                    response = await client.get(self.settings.jwt_jwks_url)
                    response.raise_for_status()
                    document = response.json()
                if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
                    raise ValueError("not a JWKS document")
            except (httpx.HTTPError, ValueError) as exc:
                if self._jwks:  # keep serving the last good keys through an IdP blip
                    return self._jwks.keys
                raise InvalidToken("identity provider keys unavailable") from exc
            keys = {}
            for entry in document["keys"]:
                try:
                    keys[str(entry.get("kid", ""))] = jwt.PyJWK(entry)
                except (jwt.PyJWTError, AttributeError, TypeError, ValueError):
                    continue  # a key type we cannot use (or junk) is skipped, not fatal
            self._jwks = _JwksCache(keys, self._attempted_at)
            return keys

    def _cached(self, force: bool) -> dict[str, jwt.PyJWK] | None:
        """Cached keys, or None when it is time to fetch. Fetches (good or failed) are at least a
        cool-down apart, so neither junk kids nor an IdP outage make every request wait on the IdP."""
        now = time.monotonic()
        if self._jwks and not force and now - self._jwks.fetched_at < JWKS_TTL_SECONDS:
            return self._jwks.keys
        if self._attempted_at is not None and now - self._attempted_at < JWKS_REFRESH_COOLDOWN_SECONDS:
            if self._jwks is None:
                raise InvalidToken("identity provider keys unavailable")
            return self._jwks.keys
        return None

    async def verify(self, token: str) -> dict[str, Any]:
        """Return the claims of a valid token or raise ``InvalidToken``."""
        if not self.configured:
            raise InvalidToken("no identity provider configured")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("malformed token") from exc
        alg = header.get("alg")
        if alg == "HS256" and self.settings.jwt_secret:
            key: Any = self.settings.jwt_secret
        elif alg in ("RS256", "ES256") and self.settings.jwt_jwks_url:
            keys = await self._jwks_keys()
            kid = header.get("kid", "")
            if kid not in keys:
                keys = await self._jwks_keys(force=True)  # rotated keys
            if kid not in keys:
                raise InvalidToken("unknown signing key")
            key = keys[kid].key
        else:
            raise InvalidToken("algorithm not accepted")
        options = {"require": ["exp", "sub"], "verify_aud": self.settings.jwt_audience is not None}
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.settings.jwt_audience,
                issuer=self.settings.jwt_issuer,
                options=options,
                leeway=30,
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
