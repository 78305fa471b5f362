"""Access and refresh tokens, checked with an independent JOSE library (joserfc) and only the public JWK."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
import warnings

import pytest
from joserfc import jwt
from joserfc.errors import BadSignatureError, ExpiredTokenError
from joserfc.jwk import KeySet

from strata.schemas import Settings
from strata.serve_apps.auth._keys import Algorithm, new_signing_key, signing_key_from_record
from strata.serve_apps.auth._tokens import hash_refresh_token, issue_access_token, new_refresh_token

SECRET = "master-secret-for-tests-only"
SETTINGS = Settings(
    _env_file=None,  # type: ignore[call-arg]
    token_issuer="strata-test",
    token_audience="strata-test-api",
    access_token_ttl_s=120,
)


def make_token(algorithm: Algorithm, now: float, **overrides: object) -> tuple[str, dict[str, object]]:
    made = new_signing_key(SECRET, algorithm)
    key = signing_key_from_record({"kid": made.kid, "alg": algorithm, "private_key": made.private_key}, SECRET)
    values: dict[str, object] = {
        "sub": "5d7f5b0e-2c8e-4c4b-9a49-0f5b1f0c7a11",
        "roles": ["member", "viewer"],
        "perm_version": 3,
        "session_id": "b1f4f0a4-9a55-4d0e-8a8e-7f1d8c1f2b33",
        **overrides,
    }
    token = issue_access_token(
        key.kid,
        key.algorithm,
        key.private_key,
        sub=str(values["sub"]),
        roles=values["roles"],  # type: ignore[arg-type]
        perm_version=int(values["perm_version"]),  # type: ignore[call-overload]
        session_id=values["session_id"],  # type: ignore[arg-type]
        settings=SETTINGS,
        now=now,
    )
    return token, {"keys": [made.public_jwk]}


def verify(token: str, jwks: dict[str, object], algorithm: str) -> jwt.Token:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc flags "EdDSA" as superseded by RFC 9864 ("Ed25519")
        return jwt.decode(token, KeySet.import_key_set(jwks), algorithms=[algorithm])  # type: ignore[arg-type]


@pytest.mark.parametrize("algorithm", ["EdDSA", "RS256"])
def test_an_access_token_verifies_with_joserfc_using_only_the_public_jwk(algorithm: Algorithm) -> None:
    now = time.time()
    token, jwks = make_token(algorithm, now)

    decoded = verify(token, jwks, algorithm)

    assert decoded.header == {"alg": algorithm, "kid": jwks["keys"][0]["kid"], "typ": "at+jwt"}  # type: ignore[index]
    claims = decoded.claims
    iat = int(now)
    assert claims["iss"] == "strata-test" and claims["aud"] == "strata-test-api"
    assert claims["sub"] == "5d7f5b0e-2c8e-4c4b-9a49-0f5b1f0c7a11"
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (iat, iat, iat + 120)
    assert str(uuid.UUID(claims["jti"])) == claims["jti"]
    assert claims["roles"] == ["member", "viewer"] and claims["pv"] == 3
    assert claims["sid"] == "b1f4f0a4-9a55-4d0e-8a8e-7f1d8c1f2b33"
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": "strata-test"},
        aud={"essential": True, "value": "strata-test-api"},
        sub={"essential": True},
        exp={"essential": True},
        nbf={"essential": True},
        iat={"essential": True},
        jti={"essential": True},
    ).validate(claims)


def test_each_token_has_its_own_jti() -> None:
    now = time.time()
    first, jwks = make_token("EdDSA", now)
    second, _ = make_token("EdDSA", now)
    assert verify(first, jwks, "EdDSA").claims["jti"] != json.loads(_segment(second, 1))["jti"]


def test_a_token_without_a_session_has_no_sid() -> None:
    token, jwks = make_token("EdDSA", time.time(), session_id=None)
    assert "sid" not in verify(token, jwks, "EdDSA").claims


def test_a_tampered_payload_fails_verification() -> None:
    token, jwks = make_token("EdDSA", time.time())
    header, _, signature = token.split(".")
    claims = json.loads(_segment(token, 1))
    claims["roles"] = ["admin"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    with pytest.raises(BadSignatureError):
        verify(f"{header}.{forged}.{signature}", jwks, "EdDSA")


def test_another_keys_jwks_does_not_verify_the_token() -> None:
    token, _ = make_token("EdDSA", time.time())
    other = new_signing_key(SECRET, "EdDSA").public_jwk
    other["kid"] = json.loads(_segment(token, 0))["kid"]  # same kid, other key
    with pytest.raises(BadSignatureError):
        verify(token, {"keys": [other]}, "EdDSA")


def test_an_expired_token_fails_claims_validation() -> None:
    token, jwks = make_token("EdDSA", time.time() - 3600)
    with pytest.raises(ExpiredTokenError):
        jwt.JWTClaimsRegistry(exp={"essential": True}).validate(verify(token, jwks, "EdDSA").claims)


def test_refresh_tokens_are_random_and_only_their_sha256_is_kept() -> None:
    tokens = {new_refresh_token() for _ in range(100)}
    assert len(tokens) == 100
    token = tokens.pop()
    assert len(token) >= 43 and set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert hash_refresh_token(token) == hashlib.sha256(token.encode()).digest()
    assert len(hash_refresh_token(token)) == 32


def _segment(token: str, index: int) -> bytes:
    part = token.split(".")[index]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
