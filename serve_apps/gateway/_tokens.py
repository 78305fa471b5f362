"""Access-token verification at the edge, with no call per request.

The auth service publishes its public keys (JWKS: the active key and the
previous one). Each gateway replica caches them and verifies every token
locally: signature with the key named by ``kid``, algorithm on an allow-list
(the key's own algorithm, never ``none`` or an HMAC), ``iss``, ``aud``,
``exp``/``nbf``/``iat`` with a small leeway, and the claims strata needs. An
unknown ``kid`` refreshes the cache once (a rotation happened), at most every
few seconds, so a flood of forged kids cannot turn into a flood of fetches. A
failed fetch is backed off too (:class:`~strata.serve_apps.gateway._fetch.BackedOffFetch`), and
the keys fetched last keep serving while the auth service is down: a known
``kid`` still verifies; an unknown one is answered 503 (the keys cannot be
checked), not 401.

A token is base64url in three segments (RFC 7515, no padding); anything else
is refused before any decoding, because Python's base64 decoder skips junk
characters, which would give one token endless spellings. A token verified
once is remembered until it expires (a bounded map keyed by a digest of its
*decoded* segments, so respellings of the unused low bits of the last
character share one entry), and a session's later requests skip the
signature check; a remembered token still needs its key in the JWKS.
Revocation is not part of verification: the gateway checks it on every
request (``_revocations.py``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jwt

from strata.schemas import InvalidToken, ServiceUnavailable, Settings
from strata.serve_apps.gateway._fetch import BackedOffFetch

logger = logging.getLogger(__name__)

ALLOWED_ALGORITHMS = frozenset({"EdDSA", "RS256"})
_REQUIRED_CLAIMS = ["iss", "aud", "sub", "iat", "nbf", "exp", "jti"]
_MIN_REFRESH_INTERVAL_S = 5.0
_MAX_AGE_S = 300.0
_MAX_TOKEN_CHARS = 8192
"""Longer than any token strata issues (about 600 characters): refused before any decoding."""
_REFUSED_HEADERS = frozenset({"jwk", "jku", "x5u", "x5c", "crit", "b64"})
"""Header parameters strata never issues: keys or key URLs the token would bring itself (the key is the JWKS's,
found by ``kid``), and critical extensions (RFC 7515 says refuse any not understood; strata understands none)."""
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
VERIFIED_CACHE_SIZE = 10_000
"""Verified tokens a gateway replica remembers (the oldest are forgotten first)."""

JwksSource = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """What the gateway knows about a caller from a verified token."""

    user_id: str
    roles: tuple[str, ...]
    perm_version: int
    session_id: str | None
    token_id: str
    issued_at: int
    expires_at: int


def _invalid(description: str) -> InvalidToken:
    return InvalidToken(description, error="invalid_token")


def _b64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def token_cache_key(token: str) -> bytes:
    """What identifies ``token`` in the verified-token cache: a digest of its decoded segments.

    ``token`` must be in compact form (only base64url characters); the last
    character's unused low bits do not change the key.
    """
    digest = hashlib.sha256()
    for segment in token.split("."):
        digest.update(_b64url(segment))
        digest.update(b".")
    return digest.digest()


class SigningKeysUnavailable(ServiceUnavailable):
    """The token names a key this replica does not know, and the auth service cannot be asked for it now."""

    slug = "signing-keys-unavailable"


class JwksCache:
    """Public keys by ``kid``, fetched from ``source`` when unknown or stale."""

    def __init__(self, source: JwksSource, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = -float("inf")
        self._lock = asyncio.Lock()
        self._fetch = BackedOffFetch(source, "the JWKS", clock)

    def knows(self, kid: str) -> bool:
        """Whether ``kid`` is among the keys fetched last (no fetch)."""
        return kid in self._keys

    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The key ``kid``, or ``None`` if the JWKS has no such key.

        Raises :class:`SigningKeysUnavailable` when ``kid`` is unknown and the
        JWKS cannot be fetched (failed, or backing off after a failure).
        """
        if kid in self._keys and self._clock() - self._fetched_at < _MAX_AGE_S:
            return self._keys[kid]
        fetched = await self._refresh()
        if kid in self._keys:
            return self._keys[kid]  # possibly older than _MAX_AGE_S: the auth service is down, known keys serve on
        if not fetched:
            raise SigningKeysUnavailable(
                "the signing keys cannot be fetched now", retry_after=self._fetch.retry_after()
            )
        return None

    async def _refresh(self) -> bool:
        """Fetch the JWKS unless one was fetched moments ago; ``False`` if it cannot be had now."""
        async with self._lock:
            if self._fetch.waiting:
                return False
            if self._clock() - self._fetched_at < _MIN_REFRESH_INTERVAL_S:
                return True
            document = await self._fetch()
            if document is None:  # the auth service failed: keep the keys, back off
                return False
            keys: dict[str, jwt.PyJWK] = {}
            for jwk in document.get("keys", []):
                if jwk.get("alg") in ALLOWED_ALGORITHMS and jwk.get("kid") and jwk.get("use", "sig") == "sig":
                    keys[jwk["kid"]] = jwt.PyJWK(jwk)
            self._keys = keys
            self._fetched_at = self._clock()
            return True


class TokenVerifier:
    """Verifies ``Authorization: Bearer`` access tokens against the JWKS cache."""

    def __init__(
        self, settings: Settings, jwks: JwksCache, clock: Callable[[], float] = time.time, cache_size: int = 0
    ) -> None:
        self._issuer = settings.token_issuer
        self._audience = settings.token_audience
        self._leeway = settings.token_leeway_s
        self._jwks = jwks
        self._clock = clock
        self._cache_size = cache_size or VERIFIED_CACHE_SIZE
        self._verified: dict[bytes, tuple[AccessClaims, str]] = {}

    async def verify_header(self, authorization: str | None) -> AccessClaims:
        if not authorization:
            raise InvalidToken("an access token is required", error=None)
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _invalid("expected 'Authorization: Bearer <token>'")
        return await self.verify(token.strip())

    async def verify(self, token: str) -> AccessClaims:
        if len(token) > _MAX_TOKEN_CHARS:
            raise _invalid("token too large")
        if _COMPACT_JWS.fullmatch(token) is None:
            raise _invalid("malformed token")
        try:
            key = token_cache_key(token)
        except binascii.Error:  # a segment of impossible length
            raise _invalid("malformed token") from None
        remembered = self._verified.get(key)
        if remembered is not None:
            claims, kid = remembered
            if claims.expires_at + self._leeway > self._clock() and self._jwks.knows(kid):
                return claims
            del self._verified[key]  # expired, or its key left the JWKS: verify again (and refuse)
        claims, kid = await self._verify(token)
        if len(self._verified) >= self._cache_size:
            del self._verified[next(iter(self._verified))]
        self._verified[key] = (claims, kid)
        return claims

    async def _verify(self, token: str) -> tuple[AccessClaims, str]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _invalid("malformed token") from None
        if _REFUSED_HEADERS & header.keys():
            raise _invalid("unsupported token header")
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm not in ALLOWED_ALGORITHMS:
            raise _invalid("unsupported signature algorithm")
        if not isinstance(kid, str) or not kid:
            raise _invalid("token has no key id")
        key = await self._jwks.key(kid)
        if key is None:
            raise _invalid("unknown signing key")
        if key.algorithm_name != algorithm:
            raise _invalid("algorithm does not match the key")
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=[key.algorithm_name],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise _invalid("token expired") from None
        except jwt.ImmatureSignatureError:
            raise _invalid("token not valid yet") from None
        except jwt.InvalidAudienceError:
            raise _invalid("token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise _invalid("token from another issuer") from None
        except jwt.PyJWTError:
            raise _invalid("invalid token") from None
        roles = claims.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise _invalid("malformed roles claim")
        verified = AccessClaims(
            user_id=str(claims["sub"]),
            roles=tuple(roles),
            perm_version=int(claims.get("pv", 0)),
            session_id=claims.get("sid"),
            token_id=str(claims["jti"]),
            issued_at=int(claims["iat"]),
            expires_at=int(claims["exp"]),
        )
        return verified, kid
