"""Accounts for HTTP tests: a registered user whose access token carries a role, and calls made as them."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from strata.contracts import UsersClient
from strata.schemas import UserNotFound
from tests.conftest import System


@dataclass(frozen=True)
class Account:
    role: str
    user_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def account(system: System, role: str = "member") -> Account:
    """A new account whose token carries ``role`` (``member`` by registration; others set through the users
    service and waited for, bounded, as they reach the auth service by events). Needs the ``ray_driver`` fixture."""
    email = f"data-{uuid.uuid4().hex[:10]}@example.com"
    password = system.remember_secret(f"Data-Pass-{uuid.uuid4().hex[:12]}")
    async with system.async_client() as client:
        registered = await client.post("/v1/auth/register", json={"email": email, "password": password})
        assert registered.status_code == 201, registered.text
        user_id = registered.json()["user_id"]
        deadline = time.monotonic() + 60
        if role != "member":
            users = UsersClient()
            while True:  # the profile comes from the `registered` event
                try:
                    await users.get_user(user_id)
                    break
                except UserNotFound:
                    assert time.monotonic() < deadline, "the profile never appeared"
                    await asyncio.sleep(0.2)
            await users.set_roles(user_id, [role], request_id="req-data-accounts", actor="test-admin")
        while True:
            tokens = (await client.post("/v1/auth/login", json={"email": email, "password": password})).json()
            token = system.remember_secret(tokens["access_token"])
            system.remember_secret(tokens["refresh_token"])
            roles = jwt.decode(token, options={"verify_signature": False})["roles"]
            headers = {"Authorization": f"Bearer {token}"}
            # Until the auth service has the role by its event, a login mints the old roles: log in again then.
            if roles == [role] and (await client.get("/v1/auth/session", headers=headers)).status_code == 200:
                return Account(role, user_id, token)
            assert time.monotonic() < deadline, f"role {role} never reached the auth service"
            await asyncio.sleep(0.5)


async def call(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    who: Account | None,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """``method path`` as ``who`` (anonymous with ``None``), with extra ``headers``."""
    sent = {**(who.headers if who is not None else {}), **(headers or {})}
    return await client.request(method, path, headers=sent, **kwargs)


def is_problem(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").startswith("application/problem+json")
