"""Identity through the gateway, over HTTP: tokens verified at the edge, 401/403/429 as problem+json."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet

from strata.actors.postgres import service_dsn
from strata.serve_apps.auth._keys import SigningKey, active_signing_key
from strata.serve_apps.auth._tokens import issue_access_token
from tests.conftest import System

pytestmark = pytest.mark.integration


def _url(system: System, path: str) -> str:
    return system.runtime.gateway_url + path


def _new_account(system: System) -> tuple[str, str]:
    email = f"user-{uuid.uuid4().hex[:10]}@example.com"
    password = system.remember_secret(f"Correct-Horse-{uuid.uuid4().hex[:12]}")
    response = httpx.post(
        _url(system, "/v1/auth/register"), json={"email": email, "password": password}, timeout=30, verify=system.verify
    )
    assert response.status_code == 201, response.text
    return email, password


def _login(system: System, email: str, password: str) -> dict[str, Any]:
    response = httpx.post(
        _url(system, "/v1/auth/login"), json={"email": email, "password": password}, timeout=30, verify=system.verify
    )
    assert response.status_code == 200, response.text
    tokens = response.json()
    system.remember_secret(tokens["access_token"])
    system.remember_secret(tokens["refresh_token"])
    return dict(tokens)


def _session(system: System, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.get(_url(system, "/v1/auth/session"), headers=headers, timeout=30, verify=system.verify)


def test_an_access_token_verifies_with_an_independent_jose_library_from_the_published_jwks(system: System) -> None:
    tokens = _login(system, *_new_account(system))
    jwks = httpx.get(_url(system, "/.well-known/jwks.json"), timeout=30, verify=system.verify)
    assert jwks.status_code == 200
    assert all("d" not in key for key in jwks.json()["keys"]), "the JWKS carries public material only"
    key_set = KeySet.import_key_set(jwks.json())
    token = jose_jwt.decode(tokens["access_token"], key_set, algorithms=["EdDSA", "RS256"])
    claims = token.claims
    assert claims["iss"] == system.runtime.settings.token_issuer
    assert claims["aud"] == system.runtime.settings.token_audience
    assert {"sub", "iat", "nbf", "exp", "jti", "roles", "pv"} <= set(claims)
    assert token.header["kid"] in {k["kid"] for k in jwks.json()["keys"]}
    assert _session(system, tokens["access_token"]).json()["user_id"] == claims["sub"]


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


async def _read_active_key(system: System) -> SigningKey:
    settings = system.runtime.settings
    assert settings.secret_key is not None
    conn = await asyncpg.connect(service_dsn(settings, "auth"))
    try:
        return await active_signing_key(conn, settings.secret_key.get_secret_value())
    finally:
        await conn.close()


def _forged_tokens(system: System, good: str, refresh_token: str) -> dict[str, str]:
    """Bad tokens of every kind; those that need strata's real key are signed with it (read as the auth role)."""
    settings = system.runtime.settings
    key = asyncio.run(_read_active_key(system))
    claims = jwt.decode(good, options={"verify_signature": False})
    header = jwt.get_unverified_header(good)

    def signed(
        overrides: dict[str, Any] | None = None,
        *,
        kid: str | None = None,
        now: float | None = None,
        headers: dict[str, Any] | None = None,
    ) -> str:
        if kid is not None or overrides or headers:
            body = {**claims, **(overrides or {})}
            return jwt.encode(
                body, key.private_key, algorithm=key.algorithm, headers={"kid": kid or key.kid, **(headers or {})}
            )
        return issue_access_token(
            key.kid,
            key.algorithm,
            key.private_key,
            sub=claims["sub"],
            roles=claims["roles"],
            perm_version=claims["pv"],
            session_id=claims.get("sid"),
            settings=settings,
            now=now,
        )

    jwks = httpx.get(_url(system, "/.well-known/jwks.json"), timeout=30, verify=system.verify).json()
    public_pem = jwt.PyJWK(jwks["keys"][0]).key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    hs_header, hs_body = _b64({"alg": "HS256", "typ": "JWT", "kid": header["kid"]}), _b64(claims)
    hs_signature = base64.urlsafe_b64encode(
        hmac.new(public_pem, f"{hs_header}.{hs_body}".encode(), hashlib.sha256).digest()
    ).decode()
    tampered_body = _b64({**claims, "roles": ["admin"]})
    head, _, signature = good.split(".")
    foreign_ed25519 = Ed25519PrivateKey.generate()
    foreign_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    foreign_jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(foreign_ed25519.public_key()))
    real_kid = header["kid"]
    return {
        "foreign Ed25519 key under a real kid": jwt.encode(
            claims, foreign_ed25519, algorithm="EdDSA", headers={"kid": real_kid}
        ),
        "foreign RSA key under a real kid": jwt.encode(
            claims, foreign_rsa, algorithm="RS256", headers={"kid": real_kid}
        ),
        "embedded jwk": jwt.encode(
            claims,
            foreign_ed25519,
            algorithm="EdDSA",
            headers={"kid": real_kid, "jwk": {**foreign_jwk, "kid": real_kid}},
        ),
        "jku": jwt.encode(
            claims,
            foreign_ed25519,
            algorithm="EdDSA",
            headers={"kid": "attacker-key", "jku": "https://attacker.example/.well-known/jwks.json"},
        ),
        "unknown crit, signed with the real key": signed(headers={"crit": ["x-strata-unknown"], "x-strata-unknown": 1}),
        "refresh token as access token": refresh_token,
        "an 8 KB token the gateway itself sees": signed({"padding": "x" * 8192}),
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': header['kid']})}.{_b64(claims)}.",
        "HS256 signed with the public key": f"{hs_header}.{hs_body}.{hs_signature.rstrip('=')}",
        "expired": signed(now=time.time() - 3 * settings.access_token_ttl_s),
        "wrong aud": signed({"aud": "another-api"}),
        "wrong iss": signed({"iss": "https://issuer.example"}),
        "unknown kid": signed(kid="no-such-key"),
        "tampered payload": f"{head}.{tampered_body}.{signature}",
    }


def test_bad_tokens_are_refused_with_401_and_a_bearer_challenge(system: System) -> None:
    tokens = _login(system, *_new_account(system))
    assert _session(system, tokens["access_token"]).status_code == 200
    missing = _session(system, None)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="strata"'
    assert missing.headers["content-type"].startswith("application/problem+json")
    forged = _forged_tokens(system, tokens["access_token"], tokens["refresh_token"])
    for case, token in forged.items():
        response = _session(system, token)
        assert response.status_code == 401, f"{case}: {response.status_code} {response.text}"
        assert 'error="invalid_token"' in response.headers["www-authenticate"], case
        body = response.json()
        assert body["status"] == 401 and body["type"].endswith("/invalid-token") and body["request_id"], case


def test_a_60_kb_token_is_refused_with_431_problem_json_at_the_tls_front(system: System) -> None:
    """Past the front's header buffer (HAProxy's 16 KB): the front answers, before the gateway sees it.

    Depends on the TLS front answering 431 problem+json for too-large headers (issue 10, another change); a front
    that answers its own HTML 400 fails this test.
    """
    tokens = _login(system, *_new_account(system))
    response = _session(system, tokens["access_token"] + "A" * 60 * 1024)
    assert response.status_code == 431, f"{response.status_code} {response.headers} {response.text[:300]}"
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == 431


def test_refresh_rotates_and_reusing_a_rotated_token_revokes_the_family(system: System) -> None:
    first = _login(system, *_new_account(system))

    def refresh(token: str) -> httpx.Response:
        return httpx.post(
            _url(system, "/v1/auth/refresh"), json={"refresh_token": token}, timeout=30, verify=system.verify
        )

    second = refresh(first["refresh_token"])
    assert second.status_code == 200, second.text
    child = system.remember_secret(second.json()["refresh_token"])
    assert child != first["refresh_token"]
    third = refresh(child)
    assert third.status_code == 200, third.text
    newest = system.remember_secret(third.json()["refresh_token"])
    # A rotated token whose child was used too: no retry after a lost answer (the grace window), theft suspected.
    reuse = refresh(first["refresh_token"])
    assert reuse.status_code == 401
    assert refresh(newest).status_code == 401, "the whole family is revoked, the newest token included"


@pytest.fixture
def clean_client_throttle(system: System) -> Iterator[None]:
    """Every HTTP test logs in from 127.0.0.1: forget this test's failures of that client afterwards."""
    yield
    system.forget_client_login_failures()


@pytest.mark.usefixtures("clean_client_throttle")
def test_repeated_wrong_passwords_get_429_and_unknown_emails_answer_alike(system: System) -> None:
    email, _ = _new_account(system)
    wrong = {"email": email, "password": "not-the-password-123"}
    unknown = {"email": f"nobody-{uuid.uuid4().hex[:8]}@example.com", "password": "not-the-password-123"}
    first_wrong = httpx.post(_url(system, "/v1/auth/login"), json=wrong, timeout=30, verify=system.verify)
    first_unknown = httpx.post(_url(system, "/v1/auth/login"), json=unknown, timeout=30, verify=system.verify)
    assert first_wrong.status_code == first_unknown.status_code == 401
    strip = ("instance", "request_id")
    assert {k: v for k, v in first_wrong.json().items() if k not in strip} == {
        k: v for k, v in first_unknown.json().items() if k not in strip
    }
    statuses = []
    for _ in range(system.runtime.settings.login_lock_after + 2):
        response = httpx.post(_url(system, "/v1/auth/login"), json=wrong, timeout=30, verify=system.verify)
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert int(response.headers["retry-after"]) >= 1
            assert response.json()["type"].endswith("/too-many-requests")
            break
    assert statuses[-1] == 429, statuses


@pytest.mark.usefixtures("clean_client_throttle")
def test_the_auth_services_errors_keep_their_status_type_and_challenge_at_the_edge(system: System) -> None:
    """Raised in the auth replica, answered by the gateway: the error crossed the hop as its own class."""
    email, password = _new_account(system)

    def post(path: str, body: dict[str, str]) -> httpx.Response:
        response = httpx.post(_url(system, path), json=body, timeout=30, verify=system.verify)
        assert response.headers["content-type"].startswith("application/problem+json"), response.text
        return response

    taken = post("/v1/auth/register", {"email": email.upper(), "password": password})
    assert taken.status_code == 409 and taken.json()["type"].endswith("/conflict")
    assert taken.json()["code"] == "email-taken"

    wrong = post("/v1/auth/login", {"email": email, "password": "not-the-password-123"})
    assert wrong.status_code == 401 and wrong.json()["type"].endswith("/invalid-credentials")
    assert wrong.headers["www-authenticate"] == 'Bearer realm="strata"'

    unknown = post("/v1/auth/refresh", {"refresh_token": "x" * 43})
    assert unknown.status_code == 401 and unknown.json()["type"].endswith("/invalid-token")
    assert 'error="invalid_token"' in unknown.headers["www-authenticate"]


def test_key_rotation_keeps_old_tokens_valid_and_new_ones_carry_the_new_kid(system: System) -> None:
    email, password = _new_account(system)
    before = _login(system, email, password)
    old_kid = jwt.get_unverified_header(before["access_token"])["kid"]
    strata = str(Path(sys.executable).parent / "strata")
    result = subprocess.run(
        [strata, "keys", "rotate"], env=system.env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    # Replicas cache the active key briefly; new tokens carry the new kid once that cache expires.
    deadline = time.monotonic() + 90
    new_kid = old_kid
    while new_kid == old_kid and time.monotonic() < deadline:
        time.sleep(2)
        new_kid = jwt.get_unverified_header(_login(system, email, password)["access_token"])["kid"]
    assert new_kid != old_kid
    kids = [
        k["kid"]
        for k in httpx.get(_url(system, "/.well-known/jwks.json"), timeout=30, verify=system.verify).json()["keys"]
    ]
    assert kids[0] == new_kid and old_kid in kids, "the JWKS holds the new active key first, then the previous one"
    assert _session(system, before["access_token"]).status_code == 200, "a token signed before rotation still works"
