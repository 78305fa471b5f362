"""Edge verification of access tokens, with an injected JWKS source and clock (no Ray, no auth service)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from strata.schemas import InvalidToken, ServiceUnavailable, Settings
from strata.serve_apps.gateway._tokens import JwksCache, TokenVerifier, token_cache_key

SETTINGS = Settings(_env_file=None)


class Keys:
    def __init__(self) -> None:
        self.private = Ed25519PrivateKey.generate()
        self.kid = uuid.uuid4().hex
        self.fetches = 0

    def jwk(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "alg": "EdDSA", "use": "sig"}

    async def source(self) -> dict[str, Any]:
        self.fetches += 1
        return {"keys": [self.jwk()]}

    def token(self, *, headers: dict[str, Any] | None = None, **overrides: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": SETTINGS.token_issuer,
            "aud": SETTINGS.token_audience,
            "sub": "user-1",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
            "roles": ["member"],
            "pv": 3,
            "sid": "family-1",
            **overrides,
        }
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, self.private, algorithm="EdDSA", headers={"kid": self.kid, **(headers or {})})


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def verifier(keys: Keys) -> TokenVerifier:
    return TokenVerifier(SETTINGS, JwksCache(keys.source))


async def test_a_good_token_gives_its_claims(keys: Keys, verifier: TokenVerifier) -> None:
    claims = await verifier.verify_header(f"Bearer {keys.token()}")
    assert (claims.user_id, claims.roles, claims.perm_version, claims.session_id) == (
        "user-1",
        ("member",),
        3,
        "family-1",
    )


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _forge_alg_none(keys: Keys) -> str:
    header = {"alg": "none", "typ": "JWT", "kid": keys.kid}
    payload = jwt.decode(keys.token(), options={"verify_signature": False})
    return f"{_b64(header)}.{_b64(payload)}."


def _forge_hs256_with_public_key(keys: Keys) -> str:
    public = keys.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    payload = jwt.decode(keys.token(), options={"verify_signature": False})
    header = _b64({"alg": "HS256", "typ": "JWT", "kid": keys.kid})
    body = _b64(payload)
    signature = hmac.new(public, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{base64.urlsafe_b64encode(signature).decode().rstrip('=')}"


def _tamper(keys: Keys) -> str:
    header, payload, signature = keys.token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["roles"] = ["admin"]
    return f"{header}.{_b64(claims)}.{signature}"


CASES = {
    "alg none": _forge_alg_none,
    "HS256 signed with the public key": _forge_hs256_with_public_key,
    "expired": lambda k: k.token(iat=int(time.time()) - 900, nbf=int(time.time()) - 900, exp=int(time.time()) - 600),
    "not valid yet": lambda k: k.token(nbf=int(time.time()) + 600),
    "wrong aud": lambda k: k.token(aud="someone-else"),
    "wrong iss": lambda k: k.token(iss="https://evil.example"),
    "unknown kid": lambda k: k.token(headers={"kid": "not-a-key"}),
    "tampered payload": _tamper,
    "signed by another key": lambda k: Keys().token(headers={"kid": k.kid}),
    "missing jti": lambda k: k.token(jti=None),
    "garbage": lambda k: "not.a.jwt",
    # Signed with the real key (only the issuer could): still refused, strata issues none of these headers.
    "unknown crit": lambda k: k.token(headers={"crit": ["x-unknown"], "x-unknown": True}),
    "embedded jwk": lambda k: k.token(headers={"jwk": k.jwk()}),
    "jku": lambda k: k.token(headers={"jku": "https://evil.example/jwks.json"}),
    "x5u": lambda k: k.token(headers={"x5u": "https://evil.example/cert.pem"}),
    "oversized": lambda k: k.token(padding="x" * 10_000),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_bad_tokens_are_refused_as_invalid_token(case: str, keys: Keys, verifier: TokenVerifier) -> None:
    with pytest.raises(InvalidToken) as caught:
        await verifier.verify_header(f"Bearer {CASES[case](keys)}")
    assert caught.value.status == 401
    assert caught.value.extra["error"] == "invalid_token"


@pytest.mark.parametrize("header", [None, "", "Basic dXNlcjpwYXNz", "Bearer ", "Bearer"])
async def test_a_missing_or_non_bearer_header_is_refused(header: str | None, verifier: TokenVerifier) -> None:
    with pytest.raises(InvalidToken):
        await verifier.verify_header(header)


async def test_no_token_gives_a_challenge_without_an_error_code(verifier: TokenVerifier) -> None:
    with pytest.raises(InvalidToken) as caught:
        await verifier.verify_header(None)
    assert caught.value.extra["error"] is None


async def test_an_unknown_kid_refreshes_the_keys_at_most_every_few_seconds(keys: Keys, verifier: TokenVerifier) -> None:
    await verifier.verify(keys.token())
    assert keys.fetches == 1
    for _ in range(20):
        with pytest.raises(InvalidToken):
            await verifier.verify(keys.token(headers={"kid": uuid.uuid4().hex}))
    assert keys.fetches == 1, "forged kids must not turn into a fetch each"


async def test_a_rotated_key_is_picked_up_on_its_first_token() -> None:
    now = [0.0]
    first, second = Keys(), Keys()
    current = [first]

    async def source() -> dict[str, Any]:
        return {"keys": [k.jwk() for k in current]}

    verifier = TokenVerifier(SETTINGS, JwksCache(source, clock=lambda: now[0]))
    await verifier.verify(first.token())
    current[:] = [second, first]  # rotation: new active key, previous kept
    now[0] += 10
    assert (await verifier.verify(second.token())).user_id == "user-1"
    assert (await verifier.verify(first.token())).user_id == "user-1"


async def test_a_verified_token_is_remembered_until_it_expires(keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [time.time()]
    verifier = TokenVerifier(SETTINGS, JwksCache(keys.source), clock=lambda: now[0])
    decodes = []
    real_decode = jwt.decode

    def counting_decode(*args: Any, **kwargs: Any) -> Any:
        decodes.append(1)
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting_decode)
    token = keys.token()
    first = await verifier.verify(token)
    assert await verifier.verify(token) == first
    assert len(decodes) == 1  # the second request skipped the signature check
    now[0] += 300 + SETTINGS.token_leeway_s + 1  # past exp by the cache's clock: the token is checked again
    await verifier.verify(token)  # (PyJWT's own clock is the real one, for which it is still valid)
    assert len(decodes) == 2


async def test_a_remembered_token_whose_key_left_the_jwks_is_verified_again() -> None:
    old, new = Keys(), Keys()
    serving = [old]
    clock = [0.0]

    async def source() -> dict[str, Any]:
        return {"keys": [k.jwk() for k in serving]}

    verifier = TokenVerifier(SETTINGS, JwksCache(source, clock=lambda: clock[0]))
    token = old.token()
    await verifier.verify(token)
    serving[:] = [new]  # the old key is retired
    clock[0] += 1000  # past the cache's refresh interval
    await verifier.verify(new.token())  # a new token makes the gateway fetch the JWKS again
    with pytest.raises(InvalidToken, match="unknown signing key"):
        await verifier.verify(token)


async def test_the_memory_of_verified_tokens_is_bounded(keys: Keys) -> None:
    verifier = TokenVerifier(SETTINGS, JwksCache(keys.source), cache_size=3)
    tokens = [keys.token() for _ in range(5)]
    for token in tokens:
        await verifier.verify(token)
    assert list(verifier._verified) == [token_cache_key(token) for token in tokens[2:]]


def _respell_last_character(token: str) -> str:
    """The same signature bytes, spelled differently: an Ed25519 signature leaves 4 unused bits in its last char."""
    head, payload, signature = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    respelled = alphabet[(last & ~0b1111) | ((last + 1) & 0b1111)]
    return f"{head}.{payload}.{signature[:-1]}{respelled}"


async def test_one_token_has_one_cache_entry_however_it_is_spelled(keys: Keys) -> None:
    verifier = TokenVerifier(SETTINGS, JwksCache(keys.source))
    token = keys.token()
    respelled = _respell_last_character(token)
    assert respelled != token and base64.urlsafe_b64decode(respelled.split(".")[2] + "==") == (
        base64.urlsafe_b64decode(token.split(".")[2] + "==")
    )
    assert await verifier.verify(token) == await verifier.verify(respelled)
    assert len(verifier._verified) == 1


@pytest.mark.parametrize("junk", ["!", " ", "\n", "=", "+", "/", "%", "é"])
async def test_a_token_with_characters_outside_base64url_is_refused_before_any_decoding(
    junk: str, keys: Keys, verifier: TokenVerifier
) -> None:
    """Python's base64 decoder skips such characters: accepted, one token would have endless cache keys."""
    token = keys.token()
    head, payload, signature = token.split(".")
    for forged in (f"{head}{junk}.{payload}.{signature}", f"{head}.{payload}{junk}.{signature}", f"{token}{junk}"):
        with pytest.raises(InvalidToken, match="malformed"):
            await verifier.verify(forged)
    assert not verifier._verified


class FlakySource:
    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self.down = False
        self.fetches = 0

    async def __call__(self) -> dict[str, Any]:
        self.fetches += 1
        if self.down:
            raise ServiceUnavailable("auth is down")
        return {"keys": [self.keys.jwk()]}


async def test_known_keys_keep_verifying_while_the_auth_service_is_down_and_fetches_back_off(keys: Keys) -> None:
    now = [0.0]
    source = FlakySource(keys)
    verifier = TokenVerifier(SETTINGS, JwksCache(source, clock=lambda: now[0]))
    await verifier.verify(keys.token())
    source.down = True
    now[0] += 10_000  # far past the keys' maximum age: a fetch is due, and fails
    for _ in range(20):
        assert (await verifier.verify(keys.token())).user_id == "user-1", "the known key serves on"
    assert source.fetches == 2, "one failed fetch, then backing off (not a fetch per request)"
    for _ in range(20):
        with pytest.raises(ServiceUnavailable) as caught:  # a kid it cannot check: 503, not a 401
            await verifier.verify(keys.token(headers={"kid": uuid.uuid4().hex}))
        assert caught.value.status == 503 and caught.value.retry_after is not None
    assert source.fetches == 2
    now[0] += 1.5  # the first pause (1 s) is over: one try, which fails and doubles the pause
    await verifier.verify(keys.token())
    now[0] += 1.5
    await verifier.verify(keys.token())
    assert source.fetches == 3
    source.down = False
    now[0] += 2.0
    with pytest.raises(InvalidToken, match="unknown signing key"):  # back to normal: an unknown kid is a 401
        await verifier.verify(keys.token(headers={"kid": uuid.uuid4().hex}))
    assert source.fetches == 4
