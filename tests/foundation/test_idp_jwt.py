"""Bearer JWTs from an external identity provider: HS256 shared secret, and RS256 via a JWKS served
by a real HTTP server on 127.0.0.1. Every way a token can be wrong is a 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import replace

import jwt
from cryptography.hazmat.primitives import serialization

from tests.conftest import app_client
from tests.foundation.conftest import rsa_key
from tests.helpers import assert_problem, new_user

AUDIENCE = "authenticated"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(sub: str | None = None, email: str | None = None, **extra: object) -> dict[str, object]:
    now = int(time.time())
    out: dict[str, object] = {
        "sub": sub or str(uuid.uuid4()),
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
        "email": email or f"idp-{secrets.token_hex(4)}@example.test",
    }
    out.update(extra)
    return {k: v for k, v in out.items() if v is not None}


def hs256(client, payload: dict[str, object], key: str | None = None) -> str:  # noqa: ANN001
    return jwt.encode(payload, key or client.runtime.settings.jwt_secret, algorithm="HS256")


def forged(header: dict[str, object], payload: dict[str, object], key: bytes | None) -> str:
    """A token put together by hand (PyJWT refuses to build the malicious ones)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = _b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest()) if key is not None else ""
    return f"{signing_input}.{signature}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_hs256_valid_maps_sub_to_a_user(client):
    sub = str(uuid.uuid4())
    token = hs256(client, claims(sub=sub))
    response = await client.get("/v1/me", headers=bearer(token))
    assert response.status_code == 200, response.text
    user = response.json()["user"]
    # The same subject is the same user, whatever email a later token carries.
    response = await client.get("/v1/me", headers=bearer(hs256(client, claims(sub=sub, email="changed@example.test"))))
    assert response.status_code == 200 and response.json()["user"]["id"] == user["id"]


async def test_hs256_links_existing_user_by_email_and_scopes_workspaces(client, tenant):
    # Linked by email only when both sides proved the address (tests/auth/test_accounts.py).
    token = hs256(client, claims(email=tenant.owner.email, email_verified=True))
    response = await client.get("/v1/me", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json()["user"]["id"] == tenant.owner.user_id
    assert [w["id"] for w in response.json()["workspaces"]] == [tenant.ws]
    response = await client.get(tenant.base, headers=bearer(token))
    assert response.status_code == 200 and response.json()["role"] == "owner"
    # No CSRF for bearer JWTs: writes work.
    response = await client.patch(tenant.base, json={"name": "Via IdP"}, headers=bearer(token))
    assert response.status_code == 200, response.text


async def test_hs256_bad_tokens_are_401(client):
    secret = client.runtime.settings.jwt_secret
    now = int(time.time())
    bad_tokens = {
        "alg none": forged({"alg": "none", "typ": "JWT"}, claims(), None),
        "alg None": forged({"alg": "None", "typ": "JWT"}, claims(), None),
        "wrong key": hs256(client, claims(), key="another-secret-that-is-also-long-enough"),
        "expired": hs256(client, claims(exp=now - 120, iat=now - 720)),
        "wrong audience": hs256(client, claims(aud="someone-else")),
        "no audience": hs256(client, {k: v for k, v in claims().items() if k != "aud"}),
        "no exp": hs256(client, {k: v for k, v in claims().items() if k != "exp"}),
        "no sub": hs256(client, {k: v for k, v in claims().items() if k != "sub"}),
        "not yet valid": hs256(client, claims(nbf=now + 3600)),
        "tampered payload": (lambda t: t.split(".")[0] + "." + _b64(json.dumps(claims()).encode()) + "." + t.split(".")[2])(
            hs256(client, claims())
        ),
        "HS512 with the secret": jwt.encode(claims(), secret, algorithm="HS512"),
        "garbage": "abc.def.ghi",
    }
    for name, token in bad_tokens.items():
        response = await client.get("/v1/me", headers=bearer(token))
        assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer"), name


async def test_new_subject_without_email_is_401(client):
    token = hs256(client, {k: v for k, v in claims().items() if k != "email"})
    assert_problem(await client.get("/v1/me", headers=bearer(token)), 401)


async def test_rs256_via_jwks_server(client, settings, jwks_server):
    issuer = "https://idp.example.test/"
    good, stranger = rsa_key(), rsa_key()
    jwks_server.publish(("key-1", good))
    jwks_settings = replace(settings, jwt_secret=None, jwt_jwks_url=jwks_server.url, jwt_issuer=issuer, jwt_audience=AUDIENCE)
    public_pem = good.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    owner = await new_user(client)

    def rs(payload: dict[str, object], key=good, kid: str = "key-1") -> str:  # noqa: ANN001
        return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})

    async with app_client(jwks_settings) as idp_app:
        response = await idp_app.get("/v1/me", headers=bearer(rs(claims(iss=issuer, email=owner.email, email_verified=True))))
        assert response.status_code == 200, response.text
        assert response.json()["user"]["id"] == owner.user_id
        assert jwks_server.requests == 1

        now = int(time.time())
        bad_tokens = {
            "signed by another RSA key": rs(claims(iss=issuer), key=stranger),
            "another key under an unknown kid": rs(claims(iss=issuer), key=stranger, kid="key-2"),
            "HS256 forged with the public key (alg confusion)": forged(
                {"alg": "HS256", "typ": "JWT", "kid": "key-1"}, claims(iss=issuer), public_pem
            ),
            "HS256 with the app's shared secret, which this app does not accept": hs256(client, claims(iss=issuer)),
            "alg none": forged({"alg": "none", "typ": "JWT", "kid": "key-1"}, claims(iss=issuer), None),
            "wrong issuer": rs(claims(iss="https://evil.example.test/")),
            "no issuer": rs(claims()),
            "expired": rs(claims(iss=issuer, exp=now - 120)),
            "wrong audience": rs(claims(iss=issuer, aud="other")),
        }
        for name, token in bad_tokens.items():
            response = await idp_app.get("/v1/me", headers=bearer(token))
            assert response.status_code == 401, (name, response.text)

        # Unknown kids trigger at most one refetch per cool-down: junk tokens cannot make Kabar
        # hammer the identity provider.
        before = jwks_server.requests
        for _ in range(5):
            await idp_app.get("/v1/me", headers=bearer(rs(claims(iss=issuer), key=stranger, kid=f"junk-{secrets.token_hex(3)}")))
        assert jwks_server.requests - before <= 1

    # Key rotation: a fresh app (cold cache) picks up the published set; a new kid is fetched.
    rotated = rsa_key()
    jwks_server.publish(("key-1", good), ("key-3", rotated))
    async with app_client(jwks_settings) as idp_app:
        response = await idp_app.get("/v1/me", headers=bearer(rs(claims(iss=issuer, email=owner.email, email_verified=True), key=rotated, kid="key-3")))
        assert response.status_code == 200, response.text


async def test_hs256_and_jwks_together_still_refuse_alg_confusion(client, settings, jwks_server):
    good = rsa_key()
    jwks_server.publish(("key-1", good))
    both = replace(settings, jwt_jwks_url=jwks_server.url, jwt_audience=AUDIENCE)
    public_pem = good.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    async with app_client(both) as idp_app:
        assert (await idp_app.get("/v1/me", headers=bearer(hs256(client, claims())))).status_code == 200
        token = jwt.encode(claims(), good, algorithm="RS256", headers={"kid": "key-1"})
        assert (await idp_app.get("/v1/me", headers=bearer(token))).status_code == 200
        confused = forged({"alg": "HS256", "typ": "JWT", "kid": "key-1"}, claims(), public_pem)
        assert_problem(await idp_app.get("/v1/me", headers=bearer(confused)), 401)


async def test_jwks_unreachable_is_401_not_500(client, settings):
    from tests.conftest import free_port

    dead = replace(settings, jwt_secret=None, jwt_jwks_url=f"http://127.0.0.1:{free_port()}/jwks.json")
    token = jwt.encode(claims(), rsa_key(), algorithm="RS256", headers={"kid": "k"})
    async with app_client(dead) as idp_app:
        assert_problem(await idp_app.get("/v1/me", headers=bearer(token)), 401)


async def test_first_sight_of_a_subject_in_parallel_makes_one_user(client):
    """A single-page app fires several requests right after sign-in: one user, no 500."""
    import asyncio

    token = hs256(client, claims())
    responses = await asyncio.gather(*(client.get("/v1/me", headers=bearer(token)) for _ in range(8)))
    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses if r.status_code != 200]
    assert len({r.json()["user"]["id"] for r in responses}) == 1
