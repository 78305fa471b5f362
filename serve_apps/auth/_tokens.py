"""Access tokens (signed JWTs) and refresh tokens (opaque random strings, stored as hashes).

An access token is an RFC 9068-style JWT (``typ: at+jwt``) signed with the
active key, ``kid`` in its header; the gateway verifies it locally against the
JWKS. Its claims::

    iss, aud, sub (user id), iat, nbf, exp (iat + access_token_ttl_s), jti (uuid4),
    roles (list of role names), pv (permissions version), sid (session: refresh-token family id)

A refresh token carries nothing: 32 random bytes, base64url, at login; each
child is its parent's HMAC-SHA256 under a key derived from the master secret
(:func:`child_refresh_token`), so a retried refresh can be answered the same
child without keeping any token. Only SHA-256 hashes are stored, so the table
alone cannot be used to refresh anything (nor, without the master secret and a
token, to work out a child).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Sequence

import jwt

from strata.schemas import REFRESH_CHILD, Settings
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


_CHILD_KEY_LABEL = REFRESH_CHILD.encode()  # what an auth replica is given: Settings.secret(REFRESH_CHILD)


def refresh_child_key(secret: str) -> bytes:
    """The key children of refresh tokens are derived under, from the master secret."""
    return hmac.new(secret.encode(), _CHILD_KEY_LABEL, hashlib.sha256).digest()


def child_refresh_token(key: bytes, parent: str) -> str:
    """The refresh token that succeeds ``parent`` when it is rotated (43 URL-safe characters, like a fresh one).

    Deterministic, so a client retrying a refresh whose answer it lost can be
    answered the same child (see :mod:`strata.serve_apps.auth._refresh`); as
    unpredictable as a random token to anyone without ``key``.
    """
    digest = hmac.new(key, parent.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
