"""Who may call what, over HTTP: every route x (anonymous, viewer, member, admin, owner), and revocation at the edge.

The data routes' matrix (collection owner, editor, viewer, stranger, admin, anonymous) is in
test_data_authorization.py; this file's matrix skips exactly the routes that one covers, so together they cover
every route of the table."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest

from strata.contracts import DataClient, UsersClient
from strata.schemas import CollectionCreate, DataCaller, ItemCreate, UserNotFound
from strata.schemas.events import ITEM_CREATED
from strata.serve_apps.gateway._access import AUTHENTICATED, PUBLIC, ROUTES
from tests.conftest import System
from tests.integration.test_data_authorization import EXPECTED as DATA_MATRIX

pytestmark = pytest.mark.integration

# The seeded role -> permission data (serve_apps/users/migrations/0002_profiles.sql): the contract under test.
SEEDED = {
    "viewer": {"profile:read", "data:read"},
    "member": {"profile:read", "profile:write", "data:read", "data:write"},
    "admin": {
        "profile:read",
        "profile:write",
        "data:read",
        "data:write",
        "data:admin",
        "users:read",
        "users:write",
        "audit:read",
        "ops:read",
    },
    "operator": {"ops:read"},
}
REVOCATION_BOUND_S = 10.0  # documented in docs/identity.md


@dataclass
class Principal:
    role: str
    user_id: str
    email: str
    password: str
    tokens: dict[str, Any]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['access_token']}"}


def _url(system: System, path: str) -> str:
    return system.runtime.gateway_url + path


def _register(system: System) -> tuple[str, str, str]:
    email = f"authz-{uuid.uuid4().hex[:10]}@example.com"
    password = system.remember_secret(f"Matrix-Pass-{uuid.uuid4().hex[:12]}")
    response = httpx.post(
        _url(system, "/v1/auth/register"), json={"email": email, "password": password}, timeout=30, verify=system.verify
    )
    assert response.status_code == 201, response.text
    return response.json()["user_id"], email, password


def _login(system: System, email: str, password: str) -> dict[str, Any]:
    response = httpx.post(
        _url(system, "/v1/auth/login"), json={"email": email, "password": password}, timeout=30, verify=system.verify
    )
    assert response.status_code == 200, response.text
    tokens = dict(response.json())
    system.remember_secret(tokens["access_token"])
    system.remember_secret(tokens["refresh_token"])
    return tokens


async def _principal(system: System, role: str) -> Principal:
    """An account whose access token carries ``role`` (set by the users service, reaching auth by events)."""
    user_id, email, password = await asyncio.to_thread(_register, system)
    users = UsersClient()
    deadline = time.monotonic() + 60
    if role != "member":
        while True:  # the profile comes from the `registered` event: wait for it before an admin acts on it
            try:
                await users.get_user(user_id)
                break
            except UserNotFound:
                assert time.monotonic() < deadline, "the profile never appeared"
                await asyncio.sleep(0.2)
        await users.set_roles(user_id, [role], request_id="req-authz", actor="test-admin")
    while True:
        tokens = await asyncio.to_thread(_login, system, email, password)
        principal = Principal(role, user_id, email, password, tokens)
        roles = jwt.decode(tokens["access_token"], options={"verify_signature": False})["roles"]
        # Until the auth service has the role by its event, a login mints the old roles: log in again then.
        if roles == [role] and await asyncio.to_thread(_session, system, principal) == 200:
            return principal
        assert time.monotonic() < deadline, f"role {role} never reached the auth service"
        await asyncio.sleep(0.5)


Request = Callable[[Principal | None], httpx.Response]


def _call(system: System, method: str, path: str, who: Principal | None, **kwargs: Any) -> httpx.Response:
    headers = who.headers if who is not None else {}
    return httpx.request(method, _url(system, path), headers=headers, timeout=30, verify=system.verify, **kwargs)


async def test_every_route_for_every_kind_of_caller(system: System, ray_driver: None) -> None:
    principals = {role: await _principal(system, role) for role in ("viewer", "member", "admin")}
    victim_id, _, _ = await asyncio.to_thread(_register, system)

    async def fresh(role: str) -> Principal:
        return await _principal(system, role)

    async def request(method: str, path: str, who: Principal | None, *, owner: bool = False) -> httpx.Response:
        """One call of ``method path`` as ``who``; destructive calls get their own target or principal."""
        target = who.user_id if (owner and who is not None) else victim_id
        concrete = path.replace("{user_id}", target).replace("{name}", "swagger-ui.css")  # a real /docs asset
        if path in ("/v1/auth/logout-all", "/v1/auth/password") and who is not None:
            who = await fresh(who.role)  # these end the caller's sessions: never spend a shared principal
        body: dict[str, Any] | None = None
        if path == "/v1/auth/register":
            body = {"email": f"m-{uuid.uuid4().hex[:10]}@example.com", "password": f"Matrix-Reg-{uuid.uuid4().hex}"}
        elif path == "/v1/auth/login":
            _, email, password = await asyncio.to_thread(_register, system)
            body = {"email": email, "password": password}
        elif path in ("/v1/auth/refresh", "/v1/auth/logout"):
            _, email, password = await asyncio.to_thread(_register, system)
            body = {"refresh_token": (await asyncio.to_thread(_login, system, email, password))["refresh_token"]}
        elif path == "/v1/auth/password" and who is not None:
            body = {"current_password": who.password, "new_password": f"Matrix-New-{uuid.uuid4().hex}"}
        elif path == "/v1/auth/password":
            body = {"current_password": "x" * 12, "new_password": "y" * 16}
        elif path == "/v1/users/me" and method == "PATCH":
            body = {"display_name": "Matrix"}
        elif path.endswith("/roles"):
            body = {"roles": ["member"]}
        destructive = method in ("POST", "DELETE") and path.startswith("/v1/users/{user_id}")
        if destructive and who is not None and who.role == "admin":
            target = (await asyncio.to_thread(_register, system))[0]
            await _until_known_to_users(system, who, target)
            concrete = path.replace("{user_id}", target).replace("{name}", "swagger-ui.css")  # a real /docs asset
        return await asyncio.to_thread(_call, system, method, concrete, who, json=body)

    failures = []
    for method, path, permission in sorted((r.method, r.path, r.permission) for r in ROUTES):
        if method == "HEAD":
            continue
        if (method, path) in DATA_MATRIX:  # owner, editor, viewer, stranger, admin: test_data_authorization.py
            continue
        for who_name in ("anonymous", "viewer", "member", "admin", "owner"):
            if who_name == "owner" and "{user_id}" not in path:
                continue
            who = None if who_name == "anonymous" else principals["member" if who_name == "owner" else who_name]
            response = await request(method, path, who, owner=who_name == "owner")
            needed = permission.removesuffix(" or self")
            if permission == PUBLIC:
                allowed = True
            elif who is None:
                allowed = False
            elif permission == AUTHENTICATED:
                allowed = True
            else:
                allowed = needed in SEEDED[who.role] or (permission.endswith(" or self") and who_name == "owner")
            expected = "2xx" if allowed else ("401" if who is None else "403")
            got = "2xx" if response.status_code < 300 else str(response.status_code)
            if got != expected:
                failures.append(f"{method} {path} as {who_name}: expected {expected}, got {response.status_code}")
    assert failures == []


async def _until_known_to_users(system: System, admin: Principal, user_id: str, timeout: float = 20.0) -> None:
    """A new account reaches the users service by its ``registered`` event: wait for it (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        response = await asyncio.to_thread(_call, system, "GET", f"/v1/users/{user_id}", admin)
        if response.status_code == 200 and response.json().get("email"):
            return
        assert time.monotonic() < deadline, f"user {user_id} never reached the users service: {response.status_code}"
        await asyncio.sleep(0.2)


def _session(system: System, principal: Principal) -> int:
    return httpx.get(
        _url(system, "/v1/auth/session"), headers=principal.headers, timeout=30, verify=system.verify
    ).status_code


async def test_disabling_a_user_stops_their_token_at_the_edge_within_the_documented_bound(
    system: System, ray_driver: None, record_property: Callable[[str, object], None]
) -> None:
    admin = await _principal(system, "admin")
    target = await _principal(system, "member")
    assert await asyncio.to_thread(_session, system, target) == 200
    started = time.monotonic()
    response = await asyncio.to_thread(_call, system, "POST", f"/v1/users/{target.user_id}/disable", admin)
    assert response.status_code == 200, response.text
    while await asyncio.to_thread(_session, system, target) != 401:
        assert time.monotonic() - started < 60, "the disabled user's token was never refused"
        await asyncio.sleep(0.1)
    elapsed = time.monotonic() - started
    record_property("disable_to_refusal_s", round(elapsed, 3))
    assert elapsed <= REVOCATION_BOUND_S, f"refused after {elapsed:.2f}s, documented bound {REVOCATION_BOUND_S}s"
    login = await asyncio.to_thread(
        httpx.post,
        _url(system, "/v1/auth/login"),
        json={"email": target.email, "password": target.password},
        verify=system.verify,
    )
    assert login.status_code == 401


async def test_logout_everywhere_stops_access_tokens_at_the_edge(system: System, ray_driver: None) -> None:
    member = await _principal(system, "member")
    response = await asyncio.to_thread(_call, system, "POST", "/v1/auth/logout-all", member)
    assert response.status_code == 204
    started = time.monotonic()
    while await asyncio.to_thread(_session, system, member) != 401:
        assert time.monotonic() - started < REVOCATION_BOUND_S, "logout-all did not reach the edge in time"
        await asyncio.sleep(0.1)


async def test_the_audit_log_is_readable_by_admins_with_filters_and_pages(system: System, ray_driver: None) -> None:
    admin = await _principal(system, "admin")
    owner = str(uuid.uuid4())
    data, caller = DataClient(), DataCaller(user_id=owner)
    collection = (await data.create_collection(caller, CollectionCreate(name="audited"))).collection
    for n in range(3):
        await data.create_item(caller, collection.id, ItemCreate(title=f"note {n}"))

    def page(cursor: str | None = None) -> httpx.Response:
        params: dict[str, Any] = {"actor": owner, "type": ITEM_CREATED.type, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        return httpx.get(
            _url(system, "/v1/audit"), params=params, headers=admin.headers, timeout=30, verify=system.verify
        )

    deadline = time.monotonic() + 60
    while True:
        first = await asyncio.to_thread(page)
        assert first.status_code == 200, first.text
        if first.json()["next_cursor"]:
            break
        assert time.monotonic() < deadline, "the audit rows never appeared"
        await asyncio.sleep(0.5)
    second = await asyncio.to_thread(page, first.json()["next_cursor"])
    rows = first.json()["items"] + second.json()["items"]
    assert len(rows) == 3 and len({r["event_id"] for r in rows}) == 3
    assert all(r["actor"] == owner and r["type"] == ITEM_CREATED.type for r in rows)
    assert second.json()["next_cursor"] is None
    bad = await asyncio.to_thread(
        httpx.get,
        _url(system, "/v1/audit"),
        params={"cursor": "%%%"},
        headers=admin.headers,
        timeout=30,
        verify=system.verify,
    )
    assert bad.status_code == 400 and bad.headers["content-type"].startswith("application/problem+json")
