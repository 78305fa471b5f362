"""The auth service against the session's real PostgreSQL, Kafka and Ray, through its typed client (AuthClient).

Every access token is checked the way an outsider would: with joserfc (a JOSE
library strata does not use) and nothing but the published JWKS.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
import warnings
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from strata.contracts import AuthClient
from strata.schemas import (
    Conflict,
    InvalidCredentials,
    InvalidToken,
    PasswordChanged,
    Registered,
    ResourceNotFound,
    RevokedSessions,
    TokenPair,
    TooManyRequests,
    Unprocessable,
)
from strata.schemas.events import decode
from strata.serve_apps.auth import PasswordHasher
from tests.conftest import System
from tests.integration.eventing import admin_fetch, admin_value, eventually

pytestmark = pytest.mark.integration

PASSWORD = "violet-Harbour-lantern-93"
NEW_PASSWORD = "quiet-Meadow-compass-17"


@functools.cache
def auth() -> AuthClient:
    """One client for the module, made at first use (the session's Ray driver is connected by then)."""
    return AuthClient()


def new_email() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@Example.org"


def new_client() -> str:
    return f"198.51.100.{uuid.uuid4().int % 250}:{uuid.uuid4().hex[:6]}"


async def registered(email: str | None = None, password: str = PASSWORD) -> Registered:
    return await auth().register(email or new_email(), password, request_id=f"req-{uuid.uuid4().hex[:8]}")


async def logged_in(email: str, password: str = PASSWORD, client: str | None = None) -> TokenPair:
    return await auth().login(email, password, client=client or new_client(), request_id=f"req-{uuid.uuid4().hex[:8]}")


async def verify(token: str) -> jwt.Token:
    """Verify ``token`` with joserfc, using only the JWKS the auth service publishes."""
    document = await auth().jwks()
    assert all(not ({"d", "p", "q", "dp", "dq", "qi"} & set(k)) for k in document.keys), "public members only"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc flags "EdDSA" as superseded by RFC 9864
        return jwt.decode(token, KeySet.import_key_set(document.model_dump()), algorithms=["EdDSA", "RS256"])


async def events_of(system: System, key: str) -> list[Any]:
    rows = await admin_fetch(system, "SELECT payload FROM auth.outbox WHERE key = $1 ORDER BY seq", key)
    return [decode(bytes(row["payload"])) for row in rows]


# --- register, login, tokens --------------------------------------------------------------------------------------


async def test_register_then_login_gives_tokens_that_verify_with_only_the_jwks(
    system: System, ray_driver: None
) -> None:
    email = new_email()
    account = await registered(email)
    assert account == Registered(user_id=account.user_id, email=email.lower())

    pair = await logged_in(email.upper())  # the email's case does not matter

    assert set(pair.model_dump()) == {"access_token", "token_type", "expires_in", "refresh_token", "refresh_expires_in"}
    settings = system.runtime.settings
    assert pair.token_type == "Bearer" and pair.expires_in == settings.access_token_ttl_s
    assert settings.refresh_token_ttl_s - 60 <= pair.refresh_expires_in <= settings.refresh_token_ttl_s
    decoded = await verify(pair.access_token)
    assert decoded.header["typ"] == "at+jwt" and decoded.header["alg"] == settings.token_algorithm
    claims = decoded.claims
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": settings.token_issuer},
        aud={"essential": True, "value": settings.token_audience},
        sub={"essential": True, "value": account.user_id},
        exp={"essential": True},
        nbf={"essential": True},
        iat={"essential": True},
        jti={"essential": True},
    ).validate(claims)
    assert claims["exp"] - claims["iat"] == settings.access_token_ttl_s
    assert claims["roles"] == ["member"] and claims["pv"] == 1
    assert uuid.UUID(claims["sid"])


async def test_register_and_login_record_their_events_without_secrets(system: System, ray_driver: None) -> None:
    email = new_email()
    account = await registered(email)
    pair = await logged_in(email)
    sid = (await verify(pair.access_token)).claims["sid"]

    events = await events_of(system, account.user_id)

    assert [e.type for e in events] == ["strata.auth.account.registered.v1", "strata.auth.account.logged_in.v1"]
    assert events[0].data == {"user_id": account.user_id, "email": email.lower()}
    assert events[1].data == {"user_id": account.user_id, "session_id": sid}
    assert all(e.subject == f"account/{account.user_id}" and e.requestid for e in events)
    payloads = await admin_fetch(system, "SELECT payload FROM auth.outbox")
    for secret in (PASSWORD, pair.refresh_token, pair.access_token):
        assert not any(secret.encode() in bytes(p["payload"]) for p in payloads)


async def test_a_weak_password_is_refused(ray_driver: None) -> None:
    for password, code in [("short", "password-too-short"), ("password1234", "password-too-common")]:
        with pytest.raises(Unprocessable) as caught:
            await registered(password=password)
        assert type(caught.value) is Unprocessable and caught.value.extra["code"] == code


async def test_a_taken_email_is_a_conflict_whatever_its_case(ray_driver: None) -> None:
    email = new_email()
    await registered(email)
    with pytest.raises(Conflict) as caught:
        await registered(f"  {email.upper()} ")
    assert type(caught.value) is Conflict and caught.value.status == 409 and caught.value.extra["code"] == "email-taken"


# --- refresh rotation and reuse -----------------------------------------------------------------------------------


async def test_refresh_rotates_and_reusing_a_rotated_token_revokes_the_whole_family(
    system: System, ray_driver: None
) -> None:
    account = await registered()
    first = await logged_in(account.email)
    sid = (await verify(first.access_token)).claims["sid"]

    second = await auth().refresh(first.refresh_token, request_id="req-refresh-1")
    third = await auth().refresh(second.refresh_token, request_id="req-refresh-2")

    assert len({first.refresh_token, second.refresh_token, third.refresh_token}) == 3
    claims = (await verify(third.access_token)).claims
    assert claims["sid"] == sid and claims["sub"] == account.user_id

    with pytest.raises(InvalidToken) as reused:
        # Rotated already, and so was its child: no lost answer explains it (that grace covers only the newest's
        # parent), it was stolen.
        await auth().refresh(first.refresh_token, request_id="req-reuse")
    assert type(reused.value) is InvalidToken and reused.value.extra["error"] == "invalid_token"
    with pytest.raises(InvalidToken):
        await auth().refresh(third.refresh_token, request_id="req-after-reuse")  # the family's newest dies too

    family = await admin_fetch(
        system, "SELECT revoked_at FROM auth.refresh_tokens WHERE family_id = $1::uuid", uuid.UUID(sid)
    )
    assert len(family) == 3 and all(row["revoked_at"] is not None for row in family)
    revoked = [e for e in await events_of(system, account.user_id) if e.type.endswith("sessions_revoked.v1")]
    assert [e.data for e in revoked] == [
        {"user_id": account.user_id, "reason": "refresh_token_reuse", "family_id": sid}
    ]


async def test_refresh_reads_roles_and_permissions_version_afresh(system: System, ray_driver: None) -> None:
    account = await registered()
    pair = await logged_in(account.email)
    await admin_value(
        system,
        "UPDATE auth.accounts SET roles = '{admin,member}', perm_version = perm_version + 1 WHERE user_id = $1::uuid",
        uuid.UUID(account.user_id),
    )
    claims = (await verify((await auth().refresh(pair.refresh_token)).access_token)).claims
    assert claims["roles"] == ["admin", "member"] and claims["pv"] == 2


async def test_an_unknown_refresh_token_is_refused(ray_driver: None) -> None:
    with pytest.raises(InvalidToken):
        await auth().refresh("x" * 43)


async def test_a_disabled_account_can_neither_log_in_nor_refresh(system: System, ray_driver: None) -> None:
    account = await registered()
    pair = await logged_in(account.email)
    await admin_value(
        system, "UPDATE auth.accounts SET disabled = true WHERE user_id = $1::uuid", uuid.UUID(account.user_id)
    )
    with pytest.raises(InvalidCredentials):
        await logged_in(account.email)
    with pytest.raises(InvalidToken):
        await auth().refresh(pair.refresh_token)


# --- logout ------------------------------------------------------------------------------------------------------


async def test_logout_ends_one_session_and_logout_all_every_one(system: System, ray_driver: None) -> None:
    account = await registered()
    one, two, three = [await logged_in(account.email) for _ in range(3)]

    assert await auth().logout(one.refresh_token, request_id="req-logout") == RevokedSessions(revoked_sessions=1)
    assert await auth().logout(one.refresh_token) == RevokedSessions(revoked_sessions=0)  # idempotent
    with pytest.raises(InvalidToken):
        await auth().refresh(one.refresh_token)
    await auth().refresh(two.refresh_token)  # other sessions live on

    ended = await auth().logout_all(account.user_id, request_id="req-logout-all")
    assert ended == RevokedSessions(revoked_sessions=2)
    for pair in (two, three):
        with pytest.raises(InvalidToken):
            await auth().refresh(pair.refresh_token)

    revoked = [e.data for e in await events_of(system, account.user_id) if e.type.endswith("sessions_revoked.v1")]
    assert revoked[0]["reason"] == "logout" and revoked[0]["family_id"]
    assert revoked[-1] == {"user_id": account.user_id, "reason": "logout_all", "family_id": None}


async def test_logout_all_of_an_unknown_account_is_not_found(ray_driver: None) -> None:
    with pytest.raises(ResourceNotFound):
        await auth().logout_all(str(uuid.uuid4()))
    with pytest.raises(ResourceNotFound):
        await auth().logout_all("not-a-uuid")


# --- brute force ------------------------------------------------------------------------------------------------


async def test_repeated_wrong_passwords_lead_to_too_many_requests_then_pass_after_the_wait(
    system: System, ray_driver: None
) -> None:
    account = await registered()
    client = new_client()
    free = system.runtime.settings.login_free_failures
    for _ in range(free):
        with pytest.raises(InvalidCredentials):
            await logged_in(account.email, "wrong-password-000", client)

    with pytest.raises(TooManyRequests) as caught:
        await logged_in(account.email, PASSWORD, client)  # refused without checking the (right) password
    error = caught.value
    assert type(error) is TooManyRequests and error.retry_after is not None and error.retry_after > 0

    await asyncio.sleep(error.retry_after)
    await logged_in(account.email, PASSWORD, client)
    assert (
        await admin_value(
            system,
            "SELECT count(*) FROM auth.login_failures WHERE scope = 'account' AND subject = $1",
            account.email,
        )
        == 0
    ), "success resets the account's count"
    failed = [e.data for e in await events_of(system, account.user_id) if e.type.endswith("login_failed.v1")]
    assert [f["reason"] for f in failed] == ["invalid_credentials"] * free + ["locked"]
    assert all(f["user_id"] == account.user_id for f in failed)


async def test_a_client_failing_across_emails_does_not_hold_an_account_nobody_failed_on(
    system: System, ray_driver: None
) -> None:
    client = new_client()
    for _ in range(system.runtime.settings.login_client_free_failures + 5):
        with pytest.raises(InvalidCredentials):
            await logged_in(new_email(), PASSWORD, client)
    account = await registered()
    await logged_in(account.email, PASSWORD, client)


async def test_a_wrong_password_and_an_unknown_email_answer_alike(system: System, ray_driver: None) -> None:
    account = await registered()
    unknown = new_email()

    with pytest.raises(InvalidCredentials) as wrong_password:
        await logged_in(account.email, "wrong-password-000")
    with pytest.raises(InvalidCredentials) as unknown_email:
        await logged_in(unknown, PASSWORD)

    a, b = wrong_password.value, unknown_email.value
    assert (type(a), a.status, a.detail, a.extra) == (type(b), b.status, b.detail, b.extra)
    # Both count against the email tried, whether it has an account or not.
    counted = await admin_fetch(
        system,
        "SELECT subject, failures FROM auth.login_failures WHERE scope = 'account' AND subject = ANY($1)",
        [account.email, unknown.lower()],
    )
    assert sorted((r["subject"], r["failures"]) for r in counted) == sorted([(account.email, 1), (unknown.lower(), 1)])
    # The failure for an unknown email names no one: no user id, no email.
    rows = await admin_fetch(system, "SELECT payload FROM auth.outbox WHERE key = 'unknown'")
    assert rows and not any(unknown.lower().encode() in bytes(r["payload"]) for r in rows)
    assert all(decode(bytes(r["payload"])).data["user_id"] is None for r in rows)


# --- password changes and rehashing --------------------------------------------------------------------------------


async def test_changing_the_password_revokes_every_session(system: System, ray_driver: None) -> None:
    account = await registered()
    pair = await logged_in(account.email)

    with pytest.raises(InvalidCredentials):
        await auth().change_password(account.user_id, "wrong-password-000", NEW_PASSWORD)
    with pytest.raises(Unprocessable):
        await auth().change_password(account.user_id, PASSWORD, "too-short")

    changed = await auth().change_password(account.user_id, PASSWORD, NEW_PASSWORD, request_id="req-change")

    assert changed == PasswordChanged(user_id=account.user_id, revoked_sessions=1)
    with pytest.raises(InvalidToken):
        await auth().refresh(pair.refresh_token)
    with pytest.raises(InvalidCredentials):
        await logged_in(account.email, PASSWORD)
    await logged_in(account.email, NEW_PASSWORD)
    types = [e.type.split(".")[-2] for e in await events_of(system, account.user_id)]
    assert types[types.index("password_changed") + 1] == "sessions_revoked"
    revoked = [e.data for e in await events_of(system, account.user_id) if e.type.endswith("sessions_revoked.v1")]
    assert revoked == [{"user_id": account.user_id, "reason": "password_changed", "family_id": None}]


async def test_a_hash_made_with_old_parameters_is_upgraded_at_login(system: System, ray_driver: None) -> None:
    account = await registered()
    old = PasswordHasher(time_cost=1, memory_kib=8192, parallelism=1).hash(PASSWORD)
    user_id = uuid.UUID(account.user_id)
    await admin_value(system, "UPDATE auth.accounts SET password_hash = $2 WHERE user_id = $1", user_id, old)

    await logged_in(account.email)

    upgraded = await admin_value(system, "SELECT password_hash FROM auth.accounts WHERE user_id = $1", user_id)
    settings = system.runtime.settings
    assert upgraded != old
    assert f"$m={settings.argon2_memory_kib},t={settings.argon2_time_cost},p={settings.argon2_parallelism}$" in upgraded
    await logged_in(account.email)  # and still verifies


# --- keys -------------------------------------------------------------------------------------------------------


async def test_after_rotation_old_tokens_still_verify_and_new_ones_carry_the_new_kid(
    system: System, ray_driver: None
) -> None:
    account = await registered()
    before = await logged_in(account.email)
    old_kid = (await verify(before.access_token)).header["kid"]

    rotated = await auth().rotate_keys()

    assert rotated.kid != old_kid and rotated.previous_kid == old_kid
    document = await auth().jwks()
    assert [k["kid"] for k in document.keys][:2] == [rotated.kid, old_kid]  # older ones may follow
    assert (await verify(before.access_token)).claims["sub"] == account.user_id

    async def new_kid() -> bool:  # another replica may sign with the old key for up to 30 s
        pair = await logged_in(account.email)
        return bool((await verify(pair.access_token)).header["kid"] == rotated.kid)

    await eventually(new_kid, timeout=45, interval=2, what="tokens signed with the new key")
    stored = await admin_fetch(system, "SELECT kid, private_key, public_jwk::text AS jwk FROM auth.signing_keys")
    assert all(b"PRIVATE" not in bytes(r["private_key"]) and '"d"' not in r["jwk"] for r in stored)


async def test_strata_keys_rotate_makes_a_new_active_key_and_list_shows_it(
    system: System, ray_driver: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from strata.cluster._cli_keys import keys_app

    for name, value in system.env.items():
        if name.startswith("STRATA_"):
            monkeypatch.setenv(name, value)
    before = [k["kid"] for k in (await auth().jwks()).keys]
    runner = CliRunner()

    rotated = await asyncio.to_thread(runner.invoke, keys_app, ["rotate"])

    assert rotated.exit_code == 0, rotated.output
    kid = rotated.stdout.splitlines()[0]
    # The new key first, then the one it replaced (older keys stay while their tokens may be live).
    assert [k["kid"] for k in (await auth().jwks()).keys][:2] == [kid, before[0]]
    listed = await asyncio.to_thread(runner.invoke, keys_app, ["list"])
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].startswith(f"{kid}  {system.runtime.settings.token_algorithm}  active")
    assert lines[1].startswith(f"{before[0]}  ") and "previous" in lines[1]
