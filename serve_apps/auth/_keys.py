"""Signing keys of access tokens: generated here, encrypted at rest, published as a JWKS, rotated.

One key is active at a time (it signs new tokens); on rotation it is retired
but stays in the JWKS until the next rotation, so tokens it signed verify until
they expire. Keys are Ed25519 (``EdDSA``) or RSA 2048 (``RS256``), as the
settings say; an active key of the other algorithm is replaced at the next
:func:`ensure_active_key`.

At rest, a private key is its PKCS#8 DER encrypted with AES-256-GCM under a key
derived from the master secret (HKDF-SHA256; the label ``SIGNING_KEY_ENCRYPTION``
of :mod:`strata.schemas._secrets`), with its ``kid`` as associated data so a
ciphertext cannot be moved to another row. Only the auth replicas are given that
key, never the master secret: units of work that cross to a pool actor carry
ciphertext only.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import asyncpg
import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm

from strata.actors.postgres import Database

Algorithm = Literal["EdDSA", "RS256"]
PrivateKey: TypeAlias = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey

ALGORITHMS: tuple[Algorithm, ...] = ("EdDSA", "RS256")
KEY_CACHE_TTL_S = 30.0
"""How long a replica signs with the active key it read before reading it again: a rotation reaches every
replica within this time."""

_HKDF_INFO = b"strata-auth-signing-key"
_FORMAT_VERSION = b"\x01"
_NONCE_BYTES = 12
_RSA_BITS = 2048
# Serialises key creation and rotation across replicas and the CLI (pg_advisory_xact_lock's key).
_LOCK_KEY = int.from_bytes(hashlib.sha256(b"strata-auth-signing-keys").digest()[:8], "big", signed=True)
# RFC 7638: the members of a public JWK that make its thumbprint, per key type.
_THUMBPRINT_MEMBERS = {"OKP": ("crv", "kty", "x"), "RSA": ("e", "kty", "n")}


class KeyDecryptionError(Exception):
    """A stored private key could not be decrypted: the master secret is not the one it was encrypted under."""


@dataclass(frozen=True, slots=True)
class EncryptedKey:
    """A new signing key as stored: ciphertext of the private key and the public JWK. Safe to pass around."""

    kid: str
    algorithm: Algorithm
    private_key: bytes
    public_jwk: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SigningKey:
    """The decrypted active key, as a replica holds it to sign tokens. Never leaves the process."""

    kid: str
    algorithm: Algorithm
    private_key: PrivateKey

    def __repr__(self) -> str:  # keep key material out of logs and tracebacks
        return f"SigningKey(kid={self.kid!r}, algorithm={self.algorithm!r})"


def _encryption_key(secret: str | bytes) -> bytes:
    """``secret`` is the signing keys' encryption key itself (32 bytes, what an auth replica is given: the label
    ``SIGNING_KEY_ENCRYPTION``), or the master secret it is derived from (the `strata` command, tests)."""
    if isinstance(secret, bytes):
        return secret
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(secret.encode())


def encrypt_private_key(private_key: PrivateKey, secret: str | bytes, kid: str) -> bytes:
    """``private_key`` as PKCS#8 DER, encrypted with AES-256-GCM: version byte, 12-byte nonce, ciphertext."""
    der = private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    nonce = os.urandom(_NONCE_BYTES)
    return _FORMAT_VERSION + nonce + AESGCM(_encryption_key(secret)).encrypt(nonce, der, kid.encode())


def decrypt_private_key(blob: bytes, secret: str | bytes, kid: str) -> PrivateKey:
    """The private key in ``blob`` (from :func:`encrypt_private_key`); :class:`KeyDecryptionError` if it fails."""
    blob = bytes(blob)
    if not blob.startswith(_FORMAT_VERSION) or len(blob) <= 1 + _NONCE_BYTES:
        raise KeyDecryptionError(f"signing key {kid!r} is not in a format this version of strata reads")
    nonce, ciphertext = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
    try:
        der = AESGCM(_encryption_key(secret)).decrypt(nonce, ciphertext, kid.encode())
    except InvalidTag:
        raise KeyDecryptionError(
            f"signing key {kid!r} does not decrypt under the master secret (STRATA_SECRET_KEY changed?)"
        ) from None
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey):
        raise KeyDecryptionError(f"signing key {kid!r} is a {type(key).__name__}, not Ed25519 or RSA")
    return key


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 thumbprint of a public JWK: base64url (unpadded) SHA-256 of its required members."""
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None:
        raise ValueError(f"no thumbprint for key type {jwk.get('kty')!r}")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).decode().rstrip("=")


def public_jwk(private_key: PrivateKey, algorithm: Algorithm) -> dict[str, Any]:
    """The public half of ``private_key`` as a JWK with ``kid`` (its thumbprint), ``alg`` and ``use: sig``."""
    if algorithm == "EdDSA":
        if not isinstance(private_key, ed25519.Ed25519PrivateKey):
            raise TypeError("EdDSA needs an Ed25519 key")
        jwk = dict(OKPAlgorithm.to_jwk(private_key.public_key(), as_dict=True))
    else:
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise TypeError("RS256 needs an RSA key")
        jwk = dict(RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True))
    jwk.pop("key_ops", None)  # RFC 7517: `use` and `key_ops` should not both be present
    jwk.pop("d", None)
    return {**jwk, "kid": jwk_thumbprint(jwk), "alg": algorithm, "use": "sig"}


def generate_private_key(algorithm: Algorithm) -> PrivateKey:
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS)
    raise ValueError(f"algorithm={algorithm!r}; expected one of {ALGORITHMS}")


def new_signing_key(secret: str | bytes, algorithm: Algorithm) -> EncryptedKey:
    """A fresh key pair for ``algorithm``, its private half encrypted under ``secret``. CPU-bound (RSA: ~0.1 s)."""
    private_key = generate_private_key(algorithm)
    jwk = public_jwk(private_key, algorithm)
    kid = str(jwk["kid"])
    return EncryptedKey(kid, algorithm, encrypt_private_key(private_key, secret, kid), jwk)


# --- units of work --------------------------------------------------------------------------------------------


async def install_key(conn: asyncpg.Connection, key: EncryptedKey, only_if_none_active: bool = False) -> str:
    """Make ``key`` the active key, retiring the current one; return the active ``kid``.

    With ``only_if_none_active``, an active key of the same algorithm is kept
    and ``key`` discarded. Serialised by an advisory lock, so concurrent
    callers never leave two active keys (a unique index forbids it anyway).
    """
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
    active = await conn.fetchrow("SELECT kid, alg FROM auth.signing_keys WHERE retired_at IS NULL")
    if only_if_none_active and active is not None and active["alg"] == key.algorithm:
        return str(active["kid"])
    await conn.execute("UPDATE auth.signing_keys SET retired_at = now() WHERE retired_at IS NULL")
    await conn.execute(
        "INSERT INTO auth.signing_keys (kid, alg, private_key, public_jwk) VALUES ($1, $2, $3, $4::jsonb)",
        key.kid,
        key.algorithm,
        key.private_key,
        orjson.dumps(key.public_jwk).decode(),
    )
    return key.kid


async def ensure_active_key(conn: asyncpg.Connection, secret: str | bytes, algorithm: Algorithm = "EdDSA") -> str:
    """The ``kid`` of the active key, after creating one if there is none (or it uses another algorithm)."""
    active = await conn.fetchrow("SELECT kid, alg FROM auth.signing_keys WHERE retired_at IS NULL")
    if active is not None and active["alg"] == algorithm:
        return str(active["kid"])
    return await install_key(conn, new_signing_key(secret, algorithm), only_if_none_active=True)


async def rotate_key(conn: asyncpg.Connection, secret: str | bytes, algorithm: Algorithm = "EdDSA") -> str:
    """Make a new active key; the current one is retired but stays in the JWKS. Returns the new ``kid``."""
    return await install_key(conn, new_signing_key(secret, algorithm))


async def active_key_record(conn: asyncpg.Connection) -> dict[str, Any] | None:
    """The active key as stored (``kid``, ``alg``, encrypted ``private_key``), or ``None``."""
    row = await conn.fetchrow("SELECT kid, alg, private_key FROM auth.signing_keys WHERE retired_at IS NULL")
    return None if row is None else {"kid": row["kid"], "alg": row["alg"], "private_key": bytes(row["private_key"])}


async def active_signing_key(conn: asyncpg.Connection, secret: str | bytes) -> SigningKey:
    """The active key, decrypted; ``LookupError`` when there is none (see :func:`ensure_active_key`)."""
    record = await active_key_record(conn)
    if record is None:
        raise LookupError("there is no active signing key")
    return signing_key_from_record(record, secret)


def signing_key_from_record(record: dict[str, Any], secret: str | bytes) -> SigningKey:
    algorithm = record["alg"]
    if algorithm not in ALGORITHMS:
        raise KeyDecryptionError(f"signing key {record['kid']!r} has unknown algorithm {algorithm!r}")
    return SigningKey(record["kid"], algorithm, decrypt_private_key(record["private_key"], secret, record["kid"]))


async def jwks(conn: asyncpg.Connection, retired_within_s: float = 0.0) -> dict[str, Any]:
    """The JWKS: the active key first, then the retired keys that may still have live tokens, newest first.

    Those are the most recently retired key, and every key retired less than ``retired_within_s`` ago: an auth
    replica may go on signing with a key for its cache's lifetime after the key was retired, and what it signs
    lives one access-token lifetime more, so two rotations within that time must not drop a key whose tokens
    are still valid. Public material only.
    """
    rows = await conn.fetch(
        "SELECT public_jwk::text AS jwk FROM auth.signing_keys"
        " WHERE retired_at IS NULL OR retired_at > now() - make_interval(secs => $1)"
        "    OR kid = (SELECT kid FROM auth.signing_keys WHERE retired_at IS NOT NULL ORDER BY retired_at DESC LIMIT 1)"
        " ORDER BY retired_at DESC NULLS FIRST",
        float(retired_within_s),
    )
    return {"keys": [_public_only(orjson.loads(row["jwk"])) for row in rows]}


def _public_only(jwk: dict[str, Any]) -> dict[str, Any]:
    # Belt and braces: the stored JWK is public already; private members never leave, whatever a row holds.
    return {k: v for k, v in jwk.items() if k not in {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}}


async def key_inventory(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Every stored key without its material: ``kid``, ``alg``, ``created_at``, ``retired_at``, newest first."""
    rows = await conn.fetch(
        "SELECT kid, alg, created_at, activated_at, retired_at FROM auth.signing_keys ORDER BY activated_at DESC"
    )
    return [dict(row) for row in rows]


# --- the replica's cache --------------------------------------------------------------------------------------


class ActiveKeyCache:
    """The active signing key, decrypted, re-read from PostgreSQL at most every ``ttl_s`` seconds.

    A rotation by another replica (or ``strata keys rotate``) reaches this one
    within ``ttl_s``; until then it keeps signing with the previous key, which
    the JWKS still publishes. With no active key (a fresh database) it makes
    one. It signs with whatever key is active, whatever its algorithm: only
    :meth:`ensure_configured` (at replica start) replaces a key of another
    algorithm, so replicas of two configurations during a rolling update do not
    rotate keys back and forth.
    """

    def __init__(
        self,
        db: Database,
        secret: str | bytes,
        algorithm: Algorithm,
        *,
        ttl_s: float = KEY_CACHE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._secret = secret
        self._algorithm = algorithm
        self._ttl_s = ttl_s
        self._clock = clock
        self._key: SigningKey | None = None
        self._loaded_at = -float("inf")
        self._lock = asyncio.Lock()

    async def ensure_configured(self) -> str:
        """Make sure the active key exists and uses the configured algorithm; return its ``kid``."""
        record = await self._db.run_in_transaction(active_key_record)
        if record is None or record["alg"] != self._algorithm:
            candidate = await asyncio.to_thread(new_signing_key, self._secret, self._algorithm)
            await self._db.run_in_transaction(install_key, candidate, True)
        self.invalidate()
        return (await self.get()).kid

    def invalidate(self) -> None:
        """Forget the cached key; the next :meth:`get` reads the active one."""
        self._key = None
        self._loaded_at = -float("inf")

    def _fresh(self) -> SigningKey | None:
        if self._key is not None and self._clock() - self._loaded_at < self._ttl_s:
            return self._key
        return None

    async def get(self) -> SigningKey:
        """The key to sign with now."""
        key = self._fresh()
        if key is not None:
            return key
        async with self._lock:  # one reload at a time; the others wait for its result
            return self._fresh() or await self._reload()

    async def _reload(self) -> SigningKey:
        record = await self._db.run_in_transaction(active_key_record)
        if record is None:
            candidate = await asyncio.to_thread(new_signing_key, self._secret, self._algorithm)
            await self._db.run_in_transaction(install_key, candidate, True)
            record = await self._db.run_in_transaction(active_key_record)
            if record is None:  # pragma: no cover - install_key just made one
                raise LookupError("there is no active signing key")
        if self._key is None or self._key.kid != record["kid"]:
            self._key = signing_key_from_record(record, self._secret)
        self._loaded_at = self._clock()
        return self._key
