"""What both peers share: their configuration, the profiles table, and access-token verification."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import asyncpg
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

PROFILE_SQL = (
    "SELECT user_id::text AS user_id, email, display_name, roles, disabled, version, created_at, updated_at"
    " FROM peer_profiles WHERE user_id = $1"
)

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS peer_profiles (
    user_id      uuid PRIMARY KEY,
    email        text,
    display_name text,
    roles        text[]      NOT NULL DEFAULT '{member}',
    disabled     boolean     NOT NULL DEFAULT false,
    version      integer     NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
)
"""
"""The same columns as strata's ``users.profiles``."""

ISSUER = "bench-peer"
AUDIENCE = "bench-api"
ALGORITHM = "EdDSA"


class Unauthorized(Exception):
    """The request's bearer token is missing or does not verify."""


@dataclass(frozen=True)
class PeerConfig:
    dsn: str
    public_key_pem: str
    pool_size: int

    @classmethod
    def from_env(cls) -> PeerConfig:
        return cls(
            dsn=os.environ["PEER_DSN"],
            public_key_pem=os.environ["PEER_JWT_PUBLIC_KEY"],
            pool_size=int(os.environ.get("PEER_POOL_SIZE", "10")),
        )


class TokenVerifier:
    """Verifies access tokens (EdDSA, issuer, audience, expiry) with one public key loaded once."""

    def __init__(self, public_key_pem: str) -> None:
        key = load_pem_public_key(public_key_pem.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the peers verify Ed25519 (EdDSA) tokens: PEER_JWT_PUBLIC_KEY is another kind of key")
        self._key = key

    def subject(self, authorization: str | None) -> str:
        if not authorization or not authorization.startswith("Bearer "):
            raise Unauthorized("missing bearer token")
        try:
            claims = jwt.decode(
                authorization[7:],
                self._key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub"]},
            )
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(str(exc)) from exc
        return str(claims["sub"])


def public_profile(row: asyncpg.Record) -> dict[str, Any]:
    profile = dict(row)
    profile["roles"] = list(profile["roles"])
    profile["created_at"] = profile["created_at"].isoformat()
    profile["updated_at"] = profile["updated_at"].isoformat()
    return profile
