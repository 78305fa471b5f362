"""Access tokens (signed JWTs) and refresh tokens (opaque random strings, stored as hashes).

An access token is an RFC 9068-style JWT (``typ: at+jwt``) signed with the
active key, ``kid`` in its header; the gateway verifies it locally against the
JWKS. Its claims::

    iss, aud, sub (user id), iat, nbf, exp (iat + access_token_ttl_s), jti (uuid4),
    roles (list of role names), pv (permissions version), sid (session: refresh-token family id)

A refresh token carries nothing: 32 random bytes, base64url. Only its SHA-256
is stored, so the table alone cannot be used to refresh anything.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Sequence

import jwt

from strata.schemas import Settings
from strata.serve_apps.auth._keys import Algorithm, PrivateKey

ACCESS_TOKEN_TYPE = "at+jwt"
REFRESH_TOKEN_BYTES = 32


def issue_access_token(
    kid: str,
    algorithm: Algorithm,
    private_key: PrivateKey,
    *,
    sub: str,
    roles: Sequence[str],
    perm_version: int,
    session_id: str | None,
    settings: Settings,
    now: float | None = None,
) -> str:
    """A signed access token for ``sub``; ``now`` (epoch seconds) defaults to the clock."""
    issued_at = int(time.time() if now is None else now)
    claims: dict[str, object] = {
        "iss": settings.token_issuer,
        "aud": settings.token_audience,
        "sub": sub,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + settings.access_token_ttl_s,
        "jti": str(uuid.uuid4()),
        "roles": list(roles),
        "pv": int(perm_version),
    }
    if session_id is not None:
        claims["sid"] = session_id
    return jwt.encode(claims, private_key, algorithm=algorithm, headers={"kid": kid, "typ": ACCESS_TOKEN_TYPE})


def new_refresh_token() -> str:
    """A fresh opaque refresh token (43 URL-safe characters)."""
    return secrets.token_urlsafe(REFRESH_TOKEN_BYTES)


def hash_refresh_token(token: str) -> bytes:
    """What is stored of a refresh token: its SHA-256 (a 256-bit random token needs no salt nor slow hash)."""
    return hashlib.sha256(token.encode()).digest()
