"""Who may call what: every route's required permission, declared in one table, enforced at the edge.

``ROUTE_PERMISSIONS`` maps ``(method, path template)`` to ``PUBLIC`` (no token),
``AUTHENTICATED`` (any valid access token) or a permission such as
``profile:read``, which one of the caller's roles must grant. Roles map to
permissions in the users service's data; each gateway replica caches that map
(refreshed every ``_PERMISSIONS_TTL_S``), so a request costs no call. A route
missing from the table is refused (fail closed), and a unit test keeps the
table and the routes in step.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from fastapi import Request
from fastapi.routing import APIRoute

from strata.schemas import DomainError, Forbidden, InvalidToken
from strata.serve_apps.gateway._revocations import Revocations
from strata.serve_apps.gateway._tokens import AccessClaims, TokenVerifier

PUBLIC = "public"
AUTHENTICATED = "authenticated"
OR_SELF = " or self"
"""Suffix: the permission is needed unless the route's ``{user_id}`` is the caller's own id."""

ROUTE_PERMISSIONS: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("HEAD", "/openapi.json"): PUBLIC,
    ("GET", "/.well-known/jwks.json"): PUBLIC,
    ("POST", "/v1/auth/register"): PUBLIC,
    ("POST", "/v1/auth/login"): PUBLIC,
    ("POST", "/v1/auth/refresh"): PUBLIC,
    ("POST", "/v1/auth/logout"): PUBLIC,  # the refresh token in the body is the credential
    ("POST", "/v1/auth/logout-all"): AUTHENTICATED,
    ("POST", "/v1/auth/password"): AUTHENTICATED,
    ("GET", "/v1/auth/session"): AUTHENTICATED,
    ("GET", "/v1/users/me"): "profile:read",
    ("PATCH", "/v1/users/me"): "profile:write",
    ("GET", "/v1/users/me/permissions"): AUTHENTICATED,
    ("GET", "/v1/users"): "users:read",
    ("GET", "/v1/users/{user_id}"): f"users:read{OR_SELF}",
    ("PUT", "/v1/users/{user_id}/roles"): "users:write",
    ("POST", "/v1/users/{user_id}/disable"): "users:write",
    ("DELETE", "/v1/users/{user_id}"): "users:write",
    ("GET", "/v1/audit"): "audit:read",
}

_PERMISSIONS_TTL_S = 30.0

RolePermissionsSource = Callable[[], Awaitable[dict[str, list[str]]]]


class UndeclaredRoute(DomainError):
    status = 500
    slug = "internal"
    title = "Internal Server Error"


class PermissionCache:
    """Role -> permissions, from the users service, refreshed when older than a TTL."""

    def __init__(self, source: RolePermissionsSource, clock: Callable[[], float] = time.monotonic) -> None:
        self._source = source
        self._clock = clock
        self._map: dict[str, frozenset[str]] = {}
        self._fetched_at = -float("inf")
        self._lock = asyncio.Lock()

    async def permissions(self, roles: tuple[str, ...]) -> frozenset[str]:
        if self._clock() - self._fetched_at >= _PERMISSIONS_TTL_S:
            async with self._lock:
                if self._clock() - self._fetched_at >= _PERMISSIONS_TTL_S:
                    fetched = await self._source()
                    self._map = {role: frozenset(perms) for role, perms in fetched.items()}
                    self._fetched_at = self._clock()
        granted: set[str] = set()
        for role in roles:
            granted |= self._map.get(role, frozenset())
        return frozenset(granted)


def route_permission(method: str, path: str) -> str | None:
    return ROUTE_PERMISSIONS.get((method.upper(), path))


async def authorize(request: Request) -> None:
    """App-wide dependency: enforce the route's declared permission; keep the caller on ``request.state``."""
    route = request.scope.get("route")
    path = route.path if isinstance(route, APIRoute) else request.url.path
    permission = route_permission(request.method, path)
    if permission is None:
        raise UndeclaredRoute("this route declares no permission")
    if permission == PUBLIC:
        return
    verifier: TokenVerifier = request.app.state.verifier
    caller = await verifier.verify_header(request.headers.get("authorization"))
    revocations: Revocations = request.app.state.revocations
    refusal = revocations.refusal(caller)
    if refusal is not None:
        raise InvalidToken(refusal, error="invalid_token")
    request.state.caller = caller
    if permission == AUTHENTICATED:
        return
    if permission.endswith(OR_SELF):
        permission = permission.removesuffix(OR_SELF)
        if request.path_params.get("user_id") == caller.user_id:
            return
    permissions: PermissionCache = request.app.state.permissions
    if permission not in await permissions.permissions(caller.roles):
        raise Forbidden(f"this route needs the permission {permission!r}")


def caller_of(request: Request) -> AccessClaims:
    """The verified caller of a non-public route (set by :func:`authorize`)."""
    caller = getattr(request.state, "caller", None)
    if not isinstance(caller, AccessClaims):
        raise UndeclaredRoute("route used the caller without declaring a permission")
    return caller
