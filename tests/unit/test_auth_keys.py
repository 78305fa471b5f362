"""Signing keys: generation, encryption at rest, public JWKs, the replica's cache (no database)."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from joserfc.jwk import KeySet, OKPKey, RSAKey

from strata.serve_apps.auth._keys import (
    ActiveKeyCache,
    Algorithm,
    EncryptedKey,
    KeyDecryptionError,
    decrypt_private_key,
    encrypt_private_key,
    generate_private_key,
    jwk_thumbprint,
    new_signing_key,
    public_jwk,
    signing_key_from_record,
)

SECRET = "master-secret-for-tests-only"
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


@pytest.mark.parametrize(
    ("algorithm", "key_type"), [("EdDSA", ed25519.Ed25519PrivateKey), ("RS256", rsa.RSAPrivateKey)]
)
def test_generated_keys_follow_the_algorithm(algorithm: Algorithm, key_type: type) -> None:
    key = generate_private_key(algorithm)
    assert isinstance(key, key_type)
    if isinstance(key, rsa.RSAPrivateKey):
        assert key.key_size == 2048


@pytest.mark.parametrize("algorithm", ["EdDSA", "RS256"])
def test_encryption_round_trips_and_the_ciphertext_hides_the_key(algorithm: Algorithm) -> None:
    key = generate_private_key(algorithm)
    blob = encrypt_private_key(key, SECRET, "kid-1")
    restored = decrypt_private_key(blob, SECRET, "kid-1")

    assert public_jwk(restored, algorithm) == public_jwk(key, algorithm)
    assert blob[0] == 1 and len(blob) > 1 + 12 + 16
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    assert der not in blob and der[-32:] not in blob


def test_two_encryptions_of_one_key_differ() -> None:
    key = generate_private_key("EdDSA")
    assert encrypt_private_key(key, SECRET, "k") != encrypt_private_key(key, SECRET, "k")


def test_a_wrong_secret_does_not_decrypt() -> None:
    blob = encrypt_private_key(generate_private_key("EdDSA"), SECRET, "kid-1")
    with pytest.raises(KeyDecryptionError, match="master secret"):
        decrypt_private_key(blob, SECRET + "x", "kid-1")


def test_a_ciphertext_moved_to_another_kid_does_not_decrypt() -> None:
    blob = encrypt_private_key(generate_private_key("EdDSA"), SECRET, "kid-1")
    with pytest.raises(KeyDecryptionError):
        decrypt_private_key(blob, SECRET, "kid-2")


def test_a_tampered_ciphertext_does_not_decrypt() -> None:
    blob = bytearray(encrypt_private_key(generate_private_key("EdDSA"), SECRET, "kid-1"))
    blob[-1] ^= 0x01
    with pytest.raises(KeyDecryptionError):
        decrypt_private_key(bytes(blob), SECRET, "kid-1")
    with pytest.raises(KeyDecryptionError, match="format"):
        decrypt_private_key(b"\x02" + bytes(blob[1:]), SECRET, "kid-1")


@pytest.mark.parametrize("algorithm", ["EdDSA", "RS256"])
def test_a_public_jwk_has_kid_alg_use_and_no_private_member(algorithm: Algorithm) -> None:
    jwk = public_jwk(generate_private_key(algorithm), algorithm)

    assert jwk["alg"] == algorithm and jwk["use"] == "sig"
    assert not PRIVATE_MEMBERS & set(jwk)
    assert "key_ops" not in jwk
    assert jwk["kty"] == ("OKP" if algorithm == "EdDSA" else "RSA")


@pytest.mark.parametrize("algorithm", ["EdDSA", "RS256"])
def test_the_kid_is_the_rfc_7638_thumbprint_as_an_independent_library_computes_it(algorithm: Algorithm) -> None:
    jwk = public_jwk(generate_private_key(algorithm), algorithm)
    imported = (OKPKey if algorithm == "EdDSA" else RSAKey).import_key(jwk)

    assert jwk["kid"] == imported.thumbprint() == jwk_thumbprint(jwk)
    assert imported.is_private is False


def test_the_rfc_7638_example_thumbprint() -> None:
    # RFC 7638, section 3.1.
    jwk = {
        "kty": "RSA",
        "n": (
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCi"
            "FV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb"
            "9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1j"
            "F44-csFCur-kEgU8awapJzKnqDKgw"
        ),
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_a_new_signing_key_carries_only_ciphertext_and_pickles() -> None:
    made = new_signing_key(SECRET, "EdDSA")

    assert made.kid == made.public_jwk["kid"]
    assert pickle.loads(pickle.dumps(made)) == made  # crosses a Ray call to a pool actor
    key = signing_key_from_record({"kid": made.kid, "alg": "EdDSA", "private_key": made.private_key}, SECRET)
    assert public_jwk(key.private_key, "EdDSA") == made.public_jwk
    assert repr(key) == f"SigningKey(kid={made.kid!r}, algorithm='EdDSA')"  # no key material in logs


def test_a_jwks_document_imports_into_an_independent_library() -> None:
    keys = [new_signing_key(SECRET, "EdDSA").public_jwk, new_signing_key(SECRET, "RS256").public_jwk]
    key_set = KeySet.import_key_set({"keys": keys})
    assert [k.kid for k in key_set.keys] == [k["kid"] for k in keys]
    assert not any(k.is_private for k in key_set.keys)


# --- the replica's cache ------------------------------------------------------------------------------------------


class FakeKeyStore:
    """Stands in for the Database: runs the units of work of _keys against an in-memory table."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []  # kid, alg, private_key, retired
        self.reads = 0

    def activate(self, key: EncryptedKey) -> None:
        for row in self.rows:
            row["retired"] = True
        self.rows.append({"kid": key.kid, "alg": key.algorithm, "private_key": key.private_key, "retired": False})

    async def run_in_transaction(self, fn: Any, *args: Any) -> Any:
        name = fn.__name__
        active = [r for r in self.rows if not r["retired"]]
        if name == "active_key_record":
            self.reads += 1
            return None if not active else {k: active[0][k] for k in ("kid", "alg", "private_key")}
        if name == "install_key":
            key, only_if_none = args[0], (args[1] if len(args) > 1 else False)
            if only_if_none and active and active[0]["alg"] == key.algorithm:
                return active[0]["kid"]
            self.activate(key)
            return key.kid
        raise AssertionError(f"unexpected unit of work {name}")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_cache_creates_a_key_on_an_empty_store_and_rereads_after_its_ttl() -> None:
    store, clock = FakeKeyStore(), Clock()
    cache = ActiveKeyCache(store, SECRET, "EdDSA", ttl_s=30, clock=clock)  # type: ignore[arg-type]

    first = await cache.get()
    assert len(store.rows) == 1 and first.kid == store.rows[0]["kid"]
    reads = store.reads
    assert (await cache.get()).kid == first.kid
    assert store.reads == reads, "served from the cache"

    rotated = new_signing_key(SECRET, "EdDSA")
    store.activate(rotated)
    clock.now += 29
    assert (await cache.get()).kid == first.kid, "within the ttl, the old key still signs"
    clock.now += 2
    assert (await cache.get()).kid == rotated.kid, "after the ttl, the rotation is seen"


async def test_invalidating_the_cache_reads_the_active_key_at_once() -> None:
    store, clock = FakeKeyStore(), Clock()
    cache = ActiveKeyCache(store, SECRET, "EdDSA", clock=clock)  # type: ignore[arg-type]
    await cache.get()
    rotated = new_signing_key(SECRET, "EdDSA")
    store.activate(rotated)
    cache.invalidate()
    assert (await cache.get()).kid == rotated.kid


async def test_ensure_configured_replaces_a_key_of_another_algorithm_only() -> None:
    store = FakeKeyStore()
    store.activate(new_signing_key(SECRET, "EdDSA"))
    same = ActiveKeyCache(store, SECRET, "EdDSA")  # type: ignore[arg-type]
    assert await same.ensure_configured() == store.rows[0]["kid"]
    assert len(store.rows) == 1

    other = ActiveKeyCache(store, SECRET, "RS256")  # type: ignore[arg-type]
    kid = await other.ensure_configured()
    assert len(store.rows) == 2 and store.rows[-1]["kid"] == kid and store.rows[-1]["alg"] == "RS256"
    assert (await other.get()).algorithm == "RS256"
    # A replica still configured for EdDSA signs with the active RS256 key rather than rotating back.
    assert (await ActiveKeyCache(store, SECRET, "EdDSA").get()).kid == kid  # type: ignore[arg-type]
    assert len(store.rows) == 2
