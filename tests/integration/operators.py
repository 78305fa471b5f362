"""An operator of the session's system: an account whose access token grants ``ops:read`` (role ``operator``)."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import jwt

from strata.contracts import UsersClient
from strata.schemas import UserNotFound
from tests.conftest import System

_HEADERS: dict[str, str] = {}
_MADE_AT: list[float] = []
_REUSE_S = 120.0  # well within an access token's lifetime (300 s by default)


async def operator_headers(system: System) -> dict[str, str]:
    """``Authorization`` of a new operator (reused for two minutes; needs the ``ray_driver`` fixture)."""
    if _HEADERS and time.monotonic() - _MADE_AT[-1] < _REUSE_S:
        return dict(_HEADERS)
    email = f"operator-{uuid.uuid4().hex[:10]}@example.com"
    password = system.remember_secret(f"Operator-Pass-{uuid.uuid4().hex[:12]}")
    with system.client() as client:
        registered = client.post("/v1/auth/register", json={"email": email, "password": password})
        assert registered.status_code == 201, registered.text
        user_id = registered.json()["user_id"]
        users = UsersClient()
        deadline = time.monotonic() + 60
        while True:  # the profile comes from the `registered` event
            try:
                await users.get_user(user_id)
                break
            except UserNotFound:
                assert time.monotonic() < deadline, "the operator's profile never appeared"
                await asyncio.sleep(0.2)
        await users.set_roles(user_id, ["operator"], actor="test-admin")
        while True:  # the role reaches the auth service by its event: until then a login mints the old roles
            tokens = client.post("/v1/auth/login", json={"email": email, "password": password}).json()
            token = system.remember_secret(tokens["access_token"])
            system.remember_secret(tokens["refresh_token"])
            headers = {"Authorization": f"Bearer {token}"}
            roles = jwt.decode(token, options={"verify_signature": False})["roles"]
            if roles == ["operator"] and client.get("/v1/auth/session", headers=headers).status_code == 200:
                _HEADERS.update(headers)
                _MADE_AT.append(time.monotonic())
                return headers
            assert time.monotonic() < deadline, "the operator role never reached the auth service"
            await asyncio.sleep(0.5)


def operator_readyz(system: System, headers: dict[str, str]) -> httpx.Response:
    with system.client() as client:
        return client.get("/readyz", headers=headers)
