"""Identity under concurrency and attack, over HTTP: refreshes racing revocations, and one address failing a lot.

Each race runs a refresh loop (bounded, every request as soon as the last answered) against a password change or a
logout-everywhere sent while it is in its stride, 50 times; afterwards no refresh token the loop ever held refreshes.
Nothing is timed: the loop ends when the session is refused, or after ``MAX_REFRESHES`` if a rotation outlived the
revocation (which the check then catches).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator

import asyncpg
import httpx
import pytest

from tests.conftest import System

pytestmark = pytest.mark.integration

RACES = 50
MAX_REFRESHES = 40
Revocation = Callable[[httpx.AsyncClient, str], Awaitable[None]]


@pytest.fixture
def clean_client_throttle(system: System) -> Iterator[None]:
    """Every HTTP test logs in from 127.0.0.1: forget this test's failures of that client afterwards."""
    yield
    system.forget_client_login_failures()


async def _register(system: System, client: httpx.AsyncClient) -> tuple[str, str]:
    email = f"race-{uuid.uuid4().hex[:10]}@example.com"
    password = system.remember_secret(f"Correct-Horse-{uuid.uuid4().hex[:12]}")
    response = await client.post("/v1/auth/register", json={"email": email, "password": password})
    assert response.status_code == 201, response.text
    return email, password


async def _login(system: System, client: httpx.AsyncClient, email: str, password: str) -> dict[str, str]:
    response = await client.post("/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    tokens = response.json()
    system.remember_secret(tokens["access_token"])
    system.remember_secret(tokens["refresh_token"])
    return dict(tokens)


async def _race(system: System, client: httpx.AsyncClient, tokens: dict[str, str], revoke: Revocation) -> list[str]:
    """Refresh in a loop while ``revoke`` runs; every refresh token the loop held, oldest first."""
    held = [tokens["refresh_token"]]
    in_stride = asyncio.Event()

    async def refresh_loop() -> None:
        for _ in range(MAX_REFRESHES):
            response = await client.post("/v1/auth/refresh", json={"refresh_token": held[-1]})
            if response.status_code != 200:
                assert response.status_code == 401, response.text
                return
            held.append(system.remember_secret(response.json()["refresh_token"]))
            in_stride.set()

    async def revoke_in_stride() -> None:
        await in_stride.wait()  # one rotation done: the next one is on its way
        await revoke(client, tokens["access_token"])

    await asyncio.gather(refresh_loop(), revoke_in_stride())
    return held


async def _refreshes(client: httpx.AsyncClient, token: str) -> bool:
    response = await client.post("/v1/auth/refresh", json={"refresh_token": token})
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


async def _race_many(system: System, revocation: Callable[[str], Revocation]) -> None:
    """``RACES`` races, each on a new account: a revocation of the whole account cuts off the access tokens of its
    second at the edge (``iat`` has whole seconds), so a next login on the same account might be refused there."""
    async with system.async_client() as client:
        for race in range(RACES):
            email, password = await _register(system, client)
            tokens = await _login(system, client, email, password)
            held = await _race(system, client, tokens, revocation(password))
            assert len(held) > 1, "the loop refreshed at least once before the revocation"
            # Newest first: presenting an older, spent token first would revoke a surviving family as reuse.
            survivors = [token for token in reversed(held) if await _refreshes(client, token)]
            assert not survivors, f"race {race}: {len(survivors)} of {len(held)} refresh tokens still refresh"


async def test_a_refresh_loop_racing_a_password_change_leaves_no_token_of_the_session_working(system: System) -> None:
    def change_password(current: str) -> Revocation:
        async def change(client: httpx.AsyncClient, access_token: str) -> None:
            new = system.remember_secret(f"Next-Horse-{uuid.uuid4().hex[:12]}")
            response = await client.post(
                "/v1/auth/password",
                json={"current_password": current, "new_password": new},
                headers={"Authorization": f"Bearer {access_token}"},
            )
            assert response.status_code == 204, response.text

        return change

    await _race_many(system, change_password)


async def test_a_refresh_loop_racing_logout_everywhere_leaves_no_token_of_the_session_working(system: System) -> None:
    async def logout_all(client: httpx.AsyncClient, access_token: str) -> None:
        response = await client.post("/v1/auth/logout-all", headers={"Authorization": f"Bearer {access_token}"})
        assert response.status_code == 204, response.text

    await _race_many(system, lambda _password: logout_all)


@pytest.mark.usefixtures("clean_client_throttle")
async def test_200_failed_logins_from_one_address_do_not_block_an_untouched_accounts_correct_login(
    system: System,
) -> None:
    async with system.async_client() as client:
        others = [await _register(system, client) for _ in range(10)]
        emails = [email for email, _ in others] + [f"nobody-{uuid.uuid4().hex[:10]}@example.com" for _ in range(190)]
        untouched = await _register(system, client)
        parallel = asyncio.Semaphore(4)

        async def fail(email: str) -> int:
            async with parallel:
                response = await client.post("/v1/auth/login", json={"email": email, "password": "Wrong-Password-1"})
                return response.status_code

        statuses = await asyncio.gather(*(fail(email) for email in emails))
        assert statuses == [401] * 200
        conn = await asyncpg.connect(system.admin_dsn)
        try:
            counted = await conn.fetchval(
                "SELECT failures FROM auth.login_failures WHERE scope = 'client' AND subject = '127.0.0.1'"
            )
        finally:
            await conn.close()
        assert counted is not None and counted >= 200, "the failures counted against this address"

        await _login(system, client, *untouched)
