"""Password policy and argon2id hashing (no database)."""

from __future__ import annotations

import asyncio

import pytest

from strata.schemas import Unprocessable
from strata.serve_apps.auth._passwords import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    PasswordHasher,
    check_email,
    check_password_policy,
    common_passwords,
    normalize_email,
)

EMAIL = "Ada.Lovelace@Example.org"
GOOD = "correct-horse-battery-staple-42"


def cheap_hasher(time_cost: int = 1) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_kib=8192, parallelism=1)


# --- policy -----------------------------------------------------------------------------------------------------


def test_a_long_uncommon_password_passes() -> None:
    check_password_policy(GOOD, EMAIL)


@pytest.mark.parametrize(
    ("password", "code"),
    [
        pytest.param("x" * (MIN_PASSWORD_LENGTH - 1), "password-too-short", id="too short"),
        pytest.param("", "password-too-short", id="empty"),
        pytest.param("y" * (MAX_PASSWORD_LENGTH + 1), "password-too-long", id="too long"),
        pytest.param("ada.lovelace@example.org", "password-matches-email", id="the email"),
        pytest.param("ADA.LOVELACE@EXAMPLE.ORG", "password-matches-email", id="the email, other case"),
        pytest.param("ada.lovelace", "password-matches-email", id="the email's local part"),
        pytest.param("password1234", "password-too-common", id="common"),
        pytest.param("QwertyUiop123", "password-too-common", id="common, other case"),
    ],
)
def test_a_password_breaking_a_rule_is_refused_with_its_code(password: str, code: str) -> None:
    with pytest.raises(Unprocessable) as caught:
        check_password_policy(password, EMAIL)
    assert caught.value.extra["code"] == code
    assert caught.value.status == 422
    assert caught.value.detail
    assert not password or password not in caught.value.detail  # the detail never echoes the password


def test_the_length_limits_are_inclusive() -> None:
    check_password_policy("k" * (MIN_PASSWORD_LENGTH - 2) + "#9", EMAIL)
    check_password_policy("k" * (MAX_PASSWORD_LENGTH - 2) + "#9", EMAIL)


def test_the_shipped_common_list_is_loaded_lower_case_without_comments() -> None:
    words = common_passwords()
    assert len(words) >= 300
    assert "password" in words and "123456789012" in words
    assert all(w == w.lower() and not w.startswith("#") for w in words)


@pytest.mark.parametrize("email", ["  Someone@Example.COM ", "someone@example.com"])
def test_emails_are_stored_trimmed_and_lower_case(email: str) -> None:
    assert normalize_email(email) == "someone@example.com"
    assert check_email(email) == "someone@example.com"


@pytest.mark.parametrize("email", ["no-at-sign", "@example.com", "someone@", "some one@example.com", "a@b", ""])
def test_what_cannot_be_an_email_is_refused(email: str) -> None:
    with pytest.raises(Unprocessable) as caught:
        check_email(email)
    assert caught.value.extra["code"] == "invalid-email"


# --- hashing ----------------------------------------------------------------------------------------------------


def test_a_hash_is_argon2id_with_the_configured_parameters_and_verifies() -> None:
    hasher = PasswordHasher(time_cost=2, memory_kib=8192, parallelism=1)
    hashed = hasher.hash(GOOD)
    assert hashed.startswith("$argon2id$v=19$m=8192,t=2,p=1$")
    assert GOOD not in hashed
    assert hasher.verify_and_update(GOOD, hashed) == (True, None)
    assert hasher.verify_and_update(GOOD + "!", hashed) == (False, None)


def test_two_hashes_of_one_password_differ() -> None:
    hasher = cheap_hasher()
    assert hasher.hash(GOOD) != hasher.hash(GOOD)


def test_changed_parameters_rehash_on_a_successful_verification_only() -> None:
    old = cheap_hasher(time_cost=1).hash(GOOD)
    current = cheap_hasher(time_cost=2)
    assert current.needs_update(old)

    assert current.verify_and_update(GOOD + "!", old) == (False, None)
    ok, upgraded = current.verify_and_update(GOOD, old)

    assert ok and upgraded is not None
    assert "$m=8192,t=2,p=1$" in upgraded
    assert not current.needs_update(upgraded)
    assert current.verify_and_update(GOOD, upgraded) == (True, None)


def test_no_hash_or_a_malformed_one_is_a_mismatch_after_a_dummy_verification() -> None:
    hasher = cheap_hasher()
    assert hasher.verify_and_update(GOOD, None) == (False, None)
    assert hasher.verify_and_update(GOOD, "not-a-hash") == (False, None)
    assert hasher.verify_and_update(GOOD, "$2b$12$" + "x" * 53) == (False, None)  # bcrypt: not this context's


async def test_hashing_runs_off_the_event_loop() -> None:
    hasher = cheap_hasher()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    try:
        hashes = await asyncio.gather(*(hasher.hash_async(GOOD) for _ in range(4)))
        ok, _ = await hasher.verify_and_update_async(GOOD, hashes[0])
    finally:
        task.cancel()
    assert ok
    assert ticks > 4, "the loop stayed free while hashing"
