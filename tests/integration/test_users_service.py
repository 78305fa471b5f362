"""The users service against the session's real PostgreSQL, Kafka and Ray, through its typed client.

Cross-service effects travel as events only: a registration creates a profile
(consumer group ``users``); a role change, disabling or deletion reaches the
auth service's accounts (consumer group ``auth``), so they are awaited with
``eventually``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from strata.contracts import UsersClient, service_handle
from strata.schemas import (
    Conflict,
    DeletedUser,
    InvalidCredentials,
    InvalidCursor,
    InvalidToken,
    Profile,
    ResourceNotFound,
    Unprocessable,
    UserNotFound,
)
from strata.schemas.events import USER_ROLES_CHANGED, UserRolesChanged, decode, new_event
from strata.serve_apps.auth._projection import apply_users_event
from tests.conftest import System
from tests.integration.eventing import admin_fetch, admin_value, eventually

pytestmark = pytest.mark.integration

PASSWORD = "amber-Glacier-whistle-58"


@functools.cache
def users() -> UsersClient:
    return UsersClient()


def auth() -> Any:
    return service_handle("auth")


def request_id() -> str:
    return f"req-{uuid.uuid4().hex[:8]}"


def claims_of(access_token: str) -> dict[str, Any]:
    """The token's claims, unverified (the auth service's tests verify signatures)."""
    payload = access_token.split(".")[1]
    return dict(orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


async def register(email: str | None = None) -> dict[str, Any]:
    return dict(
        await auth().register.remote(email or f"user-{uuid.uuid4().hex[:12]}@example.org", PASSWORD, request_id())
    )


async def login(email: str) -> dict[str, Any]:
    client = f"203.0.113.{uuid.uuid4().int % 250}:{uuid.uuid4().hex[:6]}"
    return dict(await auth().login.remote(email, PASSWORD, client, request_id()))


async def profile_created(user_id: str) -> Profile:
    """The profile once the ``registered`` event made it (the admin read does not create one)."""

    async def check() -> Profile | None:
        try:
            return await users().get_user(user_id)
        except UserNotFound:
            return None

    profile: Profile = await eventually(check, what=f"the profile of {user_id}")
    return profile


async def registered_user(email: str | None = None) -> dict[str, Any]:
    account = await register(email)
    await profile_created(account["user_id"])
    return account


async def users_events(system: System, user_id: str) -> list[Any]:
    rows = await admin_fetch(system, "SELECT payload FROM users.outbox WHERE key = $1 ORDER BY seq", user_id)
    return [decode(bytes(row["payload"])) for row in rows]


async def auth_events(system: System, user_id: str) -> list[Any]:
    rows = await admin_fetch(system, "SELECT payload FROM auth.outbox WHERE key = $1 ORDER BY seq", user_id)
    return [decode(bytes(row["payload"])) for row in rows]


async def account_row(system: System, user_id: str) -> dict[str, Any] | None:
    rows = await admin_fetch(
        system, "SELECT roles, perm_version, disabled FROM auth.accounts WHERE user_id = $1", user_id
    )
    return rows[0] if rows else None


# --- profiles -------------------------------------------------------------------------------------------------------


async def test_a_registration_creates_the_profile_through_the_event(system: System, ray_driver: None) -> None:
    email = f"Reg-{uuid.uuid4().hex[:10]}@Example.org"

    account = await register(email)
    profile = await profile_created(account["user_id"])

    assert profile.email == email.lower()
    assert profile.roles == ["member"] and profile.perm_version == 1 and profile.disabled is False
    assert await users().get_profile(account["user_id"]) == profile


async def test_update_profile_sets_the_name_and_records_an_event(system: System, ray_driver: None) -> None:
    user_id = str(uuid.uuid4())  # a token's subject whose profile does not exist yet: created on the spot
    rid = request_id()

    profile = await users().update_profile(user_id, "Ada Lovelace", request_id=rid)
    cleared = await users().update_profile(user_id, None, request_id=request_id())

    assert profile.display_name == "Ada Lovelace" and profile.user_id == user_id
    assert cleared.display_name is None and cleared.version == profile.version + 1
    events = await users_events(system, user_id)
    assert [(e.type, e.data.get("display_name")) for e in events] == [
        ("strata.users.user.updated.v1", "Ada Lovelace"),
        ("strata.users.user.updated.v1", None),
    ]
    assert events[0].requestid == rid and events[0].actor == user_id and events[0].subject == f"user/{user_id}"


async def test_get_user_of_an_unknown_or_malformed_id_is_not_found(system: System, ray_driver: None) -> None:
    for user_id in (str(uuid.uuid4()), "not-a-uuid"):
        with pytest.raises(UserNotFound) as caught:
            await users().get_user(user_id)
        assert isinstance(caught.value, ResourceNotFound) and caught.value.status == 404


async def test_a_script_written_for_plain_serve_reaches_the_service_through_its_application(
    system: System, ray_driver: None
) -> None:
    from ray import serve

    account = await registered_user()
    app_handle = serve.get_app_handle("users")  # the application's ingress: its entry passes the call on

    through_entry = await app_handle.get_user.remote(account["user_id"])
    assert through_entry == await users().get_user(account["user_id"])

    renamed = await app_handle.update_profile.remote(account["user_id"], "Entry", request_id=request_id())
    assert isinstance(renamed, Profile) and renamed.display_name == "Entry"
    assert renamed == await users().get_user(account["user_id"])
    with pytest.raises(UserNotFound):
        await app_handle.get_user.remote(str(uuid.uuid4()))


# --- listing --------------------------------------------------------------------------------------------------------


async def test_list_users_walks_every_page_once_and_filters(system: System, ray_driver: None) -> None:
    prefix = f"list-{uuid.uuid4().hex[:8]}-"
    accounts = await asyncio.gather(*(registered_user(f"{prefix}{n}@example.org") for n in range(5)))
    ids = {a["user_id"] for a in accounts}

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await users().list_users(cursor=cursor, limit=2, email_prefix=prefix.upper())
        pages += 1
        assert len(page.items) <= 2
        seen += [p.user_id for p in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 5 and set(seen) == ids  # no duplicate, no gap

    viewer = accounts[3]["user_id"]
    await users().set_roles(viewer, ["viewer"], request_id=request_id(), actor="admin-test")
    by_role = await users().list_users(limit=200, role="viewer", email_prefix=prefix)
    assert [p.user_id for p in by_role.items] == [viewer] and by_role.next_cursor is None

    zone_less = base64.urlsafe_b64encode(orjson.dumps(["2026-03-04T05:06:07", viewer])).decode()
    for bad in ("not a cursor!", base64.urlsafe_b64encode(b'["x", 1]').decode(), zone_less):
        with pytest.raises(InvalidCursor) as caught:
            await users().list_users(cursor=bad, limit=2)
        assert caught.value.status == 400
    with pytest.raises(Unprocessable):
        await users().list_users(limit=201)


# --- roles ----------------------------------------------------------------------------------------------------------


async def test_set_roles_refuses_unknown_or_no_roles_and_unknown_users(system: System, ray_driver: None) -> None:
    account = await registered_user()

    with pytest.raises(Unprocessable) as caught:
        await users().set_roles(
            account["user_id"], ["member", "wizard", "overlord"], request_id=request_id(), actor="admin-x"
        )
    error = caught.value
    assert error.extra["unknown"] == ["overlord", "wizard"] and "overlord, wizard" in error.detail
    with pytest.raises(Unprocessable):
        await users().set_roles(account["user_id"], [], request_id=request_id(), actor="admin-x")
    with pytest.raises(UserNotFound):
        await users().set_roles(str(uuid.uuid4()), ["viewer"], request_id=request_id(), actor="admin-x")
    assert (await users().get_user(account["user_id"])).perm_version == 1
    assert [e.type for e in await users_events(system, account["user_id"])] == []


async def test_a_role_change_reaches_the_auth_service_and_new_tokens(system: System, ray_driver: None) -> None:
    account = await registered_user()
    user_id, admin_id, rid = account["user_id"], str(uuid.uuid4()), request_id()

    profile = await users().set_roles(user_id, ["viewer", "admin", "viewer"], request_id=rid, actor=admin_id)
    again = await users().set_roles(user_id, ["admin", "viewer"], request_id=request_id(), actor=admin_id)

    assert profile.roles == ["admin", "viewer"] and profile.perm_version == 2
    assert again == profile  # the same roles again: no change, no event
    events = await users_events(system, user_id)
    assert [(e.type, e.data) for e in events] == [
        ("strata.users.user.roles_changed.v1", {"user_id": user_id, "roles": ["admin", "viewer"], "perm_version": 2})
    ]
    assert events[0].actor == admin_id and events[0].requestid == rid

    async def applied() -> bool:
        return await account_row(system, user_id) == {
            "roles": ["admin", "viewer"],
            "perm_version": 2,
            "disabled": False,
        }

    await eventually(applied, what="the auth service to apply roles_changed")
    claims = claims_of((await login(account["email"]))["access_token"])
    assert claims["roles"] == ["admin", "viewer"] and claims["pv"] == 2


async def test_an_older_roles_changed_event_is_ignored_by_the_auth_service(system: System, ray_driver: None) -> None:
    account = await registered_user()
    user_id = account["user_id"]
    await users().set_roles(user_id, ["viewer"], request_id=request_id(), actor="admin-x")
    await eventually(lambda: _pv_is(system, user_id, 2), what="perm_version 2 at the auth service")
    late = new_event(
        USER_ROLES_CHANGED,
        UserRolesChanged(user_id=user_id, roles=["admin"], perm_version=2),
        subject=f"user/{user_id}",
        key=user_id,
    )

    conn = await asyncpg.connect(system.admin_dsn)
    try:
        async with conn.transaction():
            await apply_users_event(conn, late)  # a duplicate arriving late: not newer than what is stored
    finally:
        await conn.close()

    assert await account_row(system, user_id) == {"roles": ["viewer"], "perm_version": 2, "disabled": False}


async def _pv_is(system: System, user_id: str, perm_version: int) -> bool:
    return bool(
        await admin_value(system, "SELECT perm_version FROM auth.accounts WHERE user_id = $1", user_id) == perm_version
    )


# --- disable, delete ------------------------------------------------------------------------------------------------


async def test_disable_stops_logins_and_refreshes_and_revokes_sessions(system: System, ray_driver: None) -> None:
    account = await registered_user()
    user_id, admin_id = account["user_id"], str(uuid.uuid4())
    pair = await login(account["email"])

    profile = await users().disable(user_id, request_id=request_id(), actor=admin_id)
    again = await users().disable(user_id, request_id=request_id(), actor=admin_id)

    assert profile.disabled is True and again.disabled is True
    assert [e.type for e in await users_events(system, user_id)] == ["strata.users.user.disabled.v1"]

    async def disabled() -> bool:
        row = await account_row(system, user_id)
        return row is not None and row["disabled"] is True

    await eventually(disabled, what="the auth service to apply disabled")
    with pytest.raises(InvalidCredentials):
        await login(account["email"])
    with pytest.raises(InvalidToken):
        await auth().refresh.remote(pair["refresh_token"], request_id())
    revoked = [e for e in await auth_events(system, user_id) if e.type.endswith("sessions_revoked.v1")]
    assert [(e.data["reason"], e.actor) for e in revoked] == [("disabled", admin_id)]
    assert (
        await admin_value(
            system, "SELECT count(*) FROM auth.refresh_tokens WHERE user_id = $1 AND revoked_at IS NULL", user_id
        )
        == 0
    )


async def test_delete_removes_the_profile_and_the_account(system: System, ray_driver: None) -> None:
    account = await registered_user()
    user_id, admin_id = account["user_id"], str(uuid.uuid4())
    pair = await login(account["email"])

    assert await users().delete_user(user_id, request_id=request_id(), actor=admin_id) == DeletedUser(user_id=user_id)

    with pytest.raises(UserNotFound):
        await users().get_user(user_id)
    with pytest.raises(UserNotFound):
        await users().delete_user(user_id, request_id=request_id(), actor=admin_id)
    assert [e.type for e in await users_events(system, user_id)] == ["strata.users.user.deleted.v1"]

    async def gone() -> bool:
        return await account_row(system, user_id) is None

    await eventually(gone, what="the auth service to delete the account")
    with pytest.raises(InvalidCredentials):
        await login(account["email"])
    with pytest.raises(InvalidToken):
        await auth().refresh.remote(pair["refresh_token"], request_id())
    revoked = [e for e in await auth_events(system, user_id) if e.type.endswith("sessions_revoked.v1")]
    assert [(e.data["reason"], e.actor) for e in revoked] == [("deleted", admin_id)]


# --- the last admin, enable ----------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def only_admins_made_here(system: System) -> AsyncIterator[None]:
    """While inside, the enabled admins of other tests are parked (disabled in the users schema only, no event), so
    the admins a test makes are the only ones; they are enabled again after."""
    parked = await admin_fetch(
        system,
        "UPDATE users.profiles SET disabled = true WHERE 'admin' = ANY (roles) AND NOT disabled RETURNING user_id",
    )
    try:
        yield
    finally:
        await admin_fetch(
            system,
            "UPDATE users.profiles SET disabled = false WHERE user_id = ANY ($1::uuid[])",
            [row["user_id"] for row in parked],
        )


async def an_admin() -> str:
    user_id = str((await registered_user())["user_id"])
    await users().set_roles(user_id, ["admin"], request_id=request_id(), actor="system")
    return user_id


async def test_the_last_admin_cannot_be_demoted_disabled_or_deleted(system: System, ray_driver: None) -> None:
    async with only_admins_made_here(system):
        last = await an_admin()

        for change in (
            users().set_roles(last, ["member"], request_id=request_id(), actor=last),
            users().disable(last, request_id=request_id(), actor=last),
            users().delete_user(last, request_id=request_id(), actor=last),
        ):
            with pytest.raises(Conflict) as caught:
                await change
            assert caught.value.extra["code"] == "last-admin"
        profile = await users().get_user(last)
        assert profile.roles == ["admin"] and profile.disabled is False
        assert [e.type for e in await users_events(system, last)] == ["strata.users.user.roles_changed.v1"]

        second = await an_admin()  # with another enabled admin, the first may go
        assert (await users().set_roles(last, ["member"], request_id=request_id(), actor=second)).roles == ["member"]
        with pytest.raises(Conflict):
            await users().disable(second, request_id=request_id(), actor=second)
        # Promoting (or keeping) admin is never refused.
        assert (await users().set_roles(second, ["admin", "viewer"], request_id=request_id())).roles == [
            "admin",
            "viewer",
        ]


async def test_concurrent_demotions_of_the_last_two_admins_leave_one(system: System, ray_driver: None) -> None:
    async with only_admins_made_here(system):
        for _ in range(5):
            first, second = await an_admin(), await an_admin()
            outcomes = await asyncio.gather(
                users().set_roles(first, ["member"], request_id=request_id()),
                users().set_roles(second, ["member"], request_id=request_id()),
                return_exceptions=True,
            )

            refused = [o for o in outcomes if isinstance(o, Conflict)]
            demoted = [o for o in outcomes if isinstance(o, Profile)]
            assert len(refused) == 1 and len(demoted) == 1, outcomes
            left = await admin_value(
                system, "SELECT count(*) FROM users.profiles WHERE 'admin' = ANY (roles) AND NOT disabled"
            )
            assert left == 1
            # Leave no admin behind for the next round: the survivor is parked like the others.
            await admin_fetch(
                system, "UPDATE users.profiles SET disabled = true WHERE user_id = ANY ($1::uuid[])", [first, second]
            )


async def test_enable_lets_a_disabled_user_log_in_again(system: System, ray_driver: None) -> None:
    account = await registered_user()
    user_id, admin_id = account["user_id"], str(uuid.uuid4())
    old = await login(account["email"])
    await users().disable(user_id, request_id=request_id(), actor=admin_id)

    async def auth_disabled_is(value: bool) -> bool:
        row = await account_row(system, user_id)
        return row is not None and row["disabled"] is value

    await eventually(lambda: auth_disabled_is(True), what="the auth service to apply disabled")
    with pytest.raises(InvalidCredentials):
        await login(account["email"])

    profile = await users().enable(user_id, request_id=request_id(), actor=admin_id)
    again = await users().enable(user_id, request_id=request_id(), actor=admin_id)

    assert profile.disabled is False and again.disabled is False
    events = await users_events(system, user_id)
    assert [e.type for e in events] == ["strata.users.user.disabled.v1", "strata.users.user.enabled.v1"]
    assert events[1].actor == admin_id
    await eventually(lambda: auth_disabled_is(False), what="the auth service to apply enabled")
    assert (await login(account["email"]))["access_token"]
    with pytest.raises(InvalidToken):  # the sessions ended by disabling stay ended
        await auth().refresh.remote(old["refresh_token"], request_id())
    with pytest.raises(UserNotFound):
        await users().enable(str(uuid.uuid4()), request_id=request_id(), actor=admin_id)


# --- strata users create-admin --------------------------------------------------------------------------------------


def _create_admin(system: System, email: str, password: str, *options: str) -> subprocess.CompletedProcess[str]:
    """``strata users create-admin EMAIL --password-stdin [options]`` (straight from its module while cli.py lacks
    it)."""
    from strata.cluster.cli import app

    if any(group.name == "users" for group in app.registered_groups):
        command = [str(Path(sys.executable).with_name("strata")), "users"]
    else:
        command = [sys.executable, "-c", "from strata.cluster._cli_users import users_app; users_app()"]
    return subprocess.run(
        [*command, "create-admin", email, "--password-stdin", *options],
        input=f"{password}\n",
        env=system.env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


async def test_create_admin_makes_an_account_whose_tokens_carry_admin(system: System, ray_driver: None) -> None:
    email = f"Admin-{uuid.uuid4().hex[:10]}@example.org"

    result = await asyncio.to_thread(_create_admin, system, email, system.remember_secret(PASSWORD))

    assert result.returncode == 0, result.stderr
    user_id = result.stdout.strip()
    assert uuid.UUID(user_id) and PASSWORD not in result.stdout + result.stderr

    async def admin_token() -> dict[str, Any] | None:
        claims = claims_of((await login(email))["access_token"])
        return claims if claims["roles"] == ["admin"] else None

    claims = await eventually(admin_token, what="a login whose token carries the admin role")
    assert claims["sub"] == user_id and claims["pv"] == 2
    profile = await users().get_user(user_id)
    assert profile.email == email.lower() and profile.roles == ["admin"]

    repeated = await asyncio.to_thread(_create_admin, system, email, "whatever-Else-entirely-11")

    assert repeated.returncode == 1 and "--existing" in repeated.stderr, repeated.stderr
    assert (await users().get_user(user_id)).perm_version == 2  # nothing changed the second time
    assert claims_of((await login(email))["access_token"])["sub"] == user_id  # its password neither


async def test_create_admin_refuses_a_registered_account_unless_existing_then_ends_its_owners_access(
    system: System, ray_driver: None
) -> None:
    """Whoever registered the email first (through the public API, with a password of their own) does not become
    admin: refused without --existing; with it, their password, refresh token and access token stop working."""
    email = f"squatter-{uuid.uuid4().hex[:10]}@example.org"
    squatter_password = system.remember_secret(f"Squat-{uuid.uuid4().hex[:12]}")
    async with system.async_client() as client:
        registered = await client.post("/v1/auth/register", json={"email": email, "password": squatter_password})
        assert registered.status_code == 201, registered.text
        user_id = registered.json()["user_id"]
        await profile_created(user_id)
        tokens = (await client.post("/v1/auth/login", json={"email": email, "password": squatter_password})).json()
        old_access = system.remember_secret(tokens["access_token"])
        old_refresh = system.remember_secret(tokens["refresh_token"])
        bearer = {"Authorization": f"Bearer {old_access}"}
        assert (await client.get("/v1/auth/session", headers=bearer)).status_code == 200

        refused = await asyncio.to_thread(_create_admin, system, email, system.remember_secret(PASSWORD))

        assert refused.returncode == 1, refused.stderr
        assert "exists already" in refused.stderr and "--existing" in refused.stderr
        assert (await users().get_user(user_id)).roles == ["member"]
        assert (await client.post("/v1/auth/login", json={"email": email, "password": squatter_password})).is_success

        taken = await asyncio.to_thread(_create_admin, system, email, PASSWORD, "--existing")

        assert taken.returncode == 0, taken.stderr
        assert taken.stdout.strip() == user_id and "session(s) of it ended" in taken.stderr
        old_login = await client.post("/v1/auth/login", json={"email": email, "password": squatter_password})
        assert old_login.status_code == 401, old_login.text
        old_refreshed = await client.post("/v1/auth/refresh", json={"refresh_token": old_refresh})
        assert old_refreshed.status_code == 401, old_refreshed.text

        async def old_access_refused() -> bool:
            return (await client.get("/v1/auth/session", headers=bearer)).status_code == 401

        await eventually(old_access_refused, what="the old access token refused at the edge")

        async def admin_token() -> bool:
            return bool(claims_of((await login(email))["access_token"])["roles"] == ["admin"])

        await eventually(admin_token, what="the operator's password to log in as admin")
        events = [e.type for e in await auth_events(system, user_id)]
        assert "strata.auth.account.password_changed.v1" in events


async def test_create_admin_enables_a_disabled_account(system: System, ray_driver: None) -> None:
    account = await registered_user()
    user_id = account["user_id"]
    await users().disable(user_id, request_id=request_id(), actor="admin-x")

    async def auth_disabled() -> bool:
        row = await account_row(system, user_id)
        return row is not None and row["disabled"] is True

    await eventually(auth_disabled, what="the auth service to apply disabled")

    result = await asyncio.to_thread(_create_admin, system, account["email"], PASSWORD, "--existing")

    assert result.returncode == 0, result.stderr
    assert (await users().get_user(user_id)).disabled is False

    async def admin_login() -> bool:
        try:
            return bool(claims_of((await login(account["email"]))["access_token"])["roles"] == ["admin"])
        except InvalidCredentials:
            return False

    await eventually(admin_login, what="the re-enabled admin to log in")
