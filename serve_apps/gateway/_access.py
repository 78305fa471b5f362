"""The one routing table of the gateway: where each route goes, who may call it, how it is rate-limited.

Each :class:`Route` of ``ROUTES`` names a path template and method, the Serve
application it is served by (``gateway`` itself, ``auth``, ``users``, ``audit``, ``data``),
the permission it requires and its rate-limit class:

- permission: ``PUBLIC`` (no token), ``AUTHENTICATED`` (any valid access token)
  or a permission such as ``profile:read``, which one of the caller's roles must
  grant; ``"<permission> or self"`` also lets a caller reach their own
  ``{user_id}``. Roles map to permissions in the users service's data; each
  gateway replica caches that map (refreshed every ``_PERMISSIONS_TTL_S``), so a
  request costs no call. A failed refresh is backed off (doubling, up to 30 s:
  :class:`~strata.serve_apps.gateway._fetch.BackedOffFetch`) and the map
  fetched last serves on; only a replica that never had one answers 503.
- rate-limit class: ``auth`` (register, login, password change: the
  strictest), ``refresh`` (a per-address flood guard of its own: the auth
  service limits refreshes per session and per account, so failed logins
  from an address never block its refreshes), ``read`` (GET), ``write``
  (other changes) or ``none`` (probes and documents that cost nothing); the
  quotas are the ``rate_limit_*`` settings (see
  :mod:`strata.serve_apps.gateway._ratelimit`).

:func:`authorize`, a dependency of every route, looks the route up, rate-limits
the caller and enforces the permission. A route missing from the table is
refused (fail closed), and a unit test keeps the table and the routes in step.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from fastapi import Request
from fastapi.routing import APIRoute

from strata.actors import current_scope
from strata.schemas import DomainError, Forbidden, InvalidToken, RolePermissions, ServiceUnavailable
from strata.serve_apps.gateway._consistency import consistency_signer, read_after, session_positions
from strata.serve_apps.gateway._fetch import BackedOffFetch
from strata.serve_apps.gateway._ratelimit import LimitClass, enforce_rate_limit
from strata.serve_apps.gateway._revocations import CATCH_UP_WAIT_S, FeedProgress, FeedState, Revocations
from strata.serve_apps.gateway._tokens import AccessClaims, TokenVerifier

PUBLIC = "public"
AUTHENTICATED = "authenticated"
OR_SELF = " or self"
"""Suffix: the permission is needed unless the route's ``{user_id}`` is the caller's own id."""

App = Literal["gateway", "auth", "users", "audit", "data"]


@dataclass(frozen=True, slots=True)
class Route:
    """One row of the routing table."""

    method: str
    path: str
    app: App
    """The Serve application that answers it (``gateway``: the gateway itself)."""
    permission: str
    limit: LimitClass
    """Rate-limit class."""


ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", "gateway", PUBLIC, "none"),
    Route("GET", "/readyz", "gateway", PUBLIC, "none"),
    Route("GET", "/openapi.json", "gateway", PUBLIC, "none"),
    Route("HEAD", "/openapi.json", "gateway", PUBLIC, "none"),
    Route("GET", "/docs", "gateway", PUBLIC, "none"),
    Route("GET", "/docs/assets/{name}", "gateway", PUBLIC, "none"),  # Swagger UI's files, from the installed package
    Route("GET", "/.well-known/jwks.json", "auth", PUBLIC, "read"),
    Route("POST", "/v1/auth/register", "auth", PUBLIC, "auth"),
    Route("POST", "/v1/auth/login", "auth", PUBLIC, "auth"),
    Route("POST", "/v1/auth/refresh", "auth", PUBLIC, "refresh"),  # limited per session and account by the service
    Route("POST", "/v1/auth/logout", "auth", PUBLIC, "write"),  # the refresh token in the body is the credential
    Route("POST", "/v1/auth/logout-all", "auth", AUTHENTICATED, "write"),
    Route("POST", "/v1/auth/password", "auth", AUTHENTICATED, "auth"),
    Route("GET", "/v1/auth/session", "gateway", AUTHENTICATED, "read"),  # answered from the verified token
    Route("GET", "/v1/users/me", "users", "profile:read", "read"),
    Route("PATCH", "/v1/users/me", "users", "profile:write", "write"),
    Route("GET", "/v1/users/me/permissions", "users", AUTHENTICATED, "read"),
    Route("GET", "/v1/users", "users", "users:read", "read"),
    Route("GET", "/v1/users/{user_id}", "users", f"users:read{OR_SELF}", "read"),
    Route("PUT", "/v1/users/{user_id}/roles", "users", "users:write", "write"),
    Route("POST", "/v1/users/{user_id}/disable", "users", "users:write", "write"),
    Route("POST", "/v1/users/{user_id}/enable", "users", "users:write", "write"),
    Route("DELETE", "/v1/users/{user_id}", "users", "users:write", "write"),
    Route("GET", "/v1/audit", "audit", "audit:read", "read"),
    # The data service checks the caller's role in the collection itself, in the query that reads or writes.
    Route("POST", "/v1/collections", "data", "data:write", "write"),
    Route("GET", "/v1/collections", "data", "data:read", "read"),
    Route("GET", "/v1/collections/{collection_id}", "data", "data:read", "read"),
    Route("GET", "/v1/collections/{collection_id}/stats", "data", "data:read", "read"),
    Route("PATCH", "/v1/collections/{collection_id}", "data", "data:write", "write"),
    Route("DELETE", "/v1/collections/{collection_id}", "data", "data:write", "write"),
    Route("GET", "/v1/collections/{collection_id}/members", "data", "data:read", "read"),
    Route("GET", "/v1/collections/{collection_id}/members/{user_id}", "data", "data:read", "read"),
    Route("PUT", "/v1/collections/{collection_id}/members/{user_id}", "data", "data:write", "write"),
    Route("DELETE", "/v1/collections/{collection_id}/members/{user_id}", "data", "data:write", "write"),
    Route("POST", "/v1/collections/{collection_id}/items", "data", "data:write", "write"),
    Route("GET", "/v1/collections/{collection_id}/items", "data", "data:read", "read"),
    Route("POST", "/v1/collections/{collection_id}/items/batch", "data", "data:write", "write"),
    Route("GET", "/v1/collections/{collection_id}/items/{item_id}", "data", "data:read", "read"),
    Route("PUT", "/v1/collections/{collection_id}/items/{item_id}", "data", "data:write", "write"),
    Route("PATCH", "/v1/collections/{collection_id}/items/{item_id}", "data", "data:write", "write"),
    Route("DELETE", "/v1/collections/{collection_id}/items/{item_id}", "data", "data:write", "write"),
)

ROUTE_TABLE: dict[tuple[str, str], Route] = {(route.method, route.path): route for route in ROUTES}
"""``ROUTES`` by ``(method, path template)``."""

logger = logging.getLogger(__name__)

_PERMISSIONS_TTL_S = 30.0

RolePermissionsSource = Callable[[], Awaitable[RolePermissions]]
"""Where the map comes from: the users service's ``role_permissions`` (``UsersClient.role_permissions``)."""


class UndeclaredRoute(DomainError):
    status = 500
    slug = "internal"
    title = "Internal Server Error"


class PermissionCache:
    """Role -> permissions, from the users service, refreshed when older than a TTL."""

    def __init__(self, source: RolePermissionsSource, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._map: RolePermissions | None = None
        self._fetched_at = -float("inf")
        self._lock = asyncio.Lock()
        self._fetch = BackedOffFetch(source, "the role permissions", clock)

    async def permissions(self, roles: tuple[str, ...]) -> frozenset[str]:
        """What ``roles`` grant; raises :class:`~strata.schemas.ServiceUnavailable` if no map was ever had."""
        if self._clock() - self._fetched_at >= _PERMISSIONS_TTL_S and not self._fetch.waiting:
            async with self._lock:
                if self._clock() - self._fetched_at >= _PERMISSIONS_TTL_S and not self._fetch.waiting:
                    await self._refresh()
        if self._map is None:
            raise ServiceUnavailable(
                "the role permissions cannot be fetched now", retry_after=self._fetch.retry_after()
            )
        return self._map.granted(roles)

    async def _refresh(self) -> None:
        fetched = await self._fetch()
        if fetched is not None:  # else the users service failed: keep the map, back off
            self._map = fetched
            self._fetched_at = self._clock()


def route_for(method: str, path: str) -> Route | None:
    """The table's row for ``method`` on the path template ``path``, or ``None``."""
    return ROUTE_TABLE.get((method.upper(), path))


async def authorize(request: Request) -> None:
    """App-wide dependency: look the route up, rate-limit the caller, enforce the route's permission.

    The limit is checked before the body is validated and before any service is
    called, so a refused request costs almost nothing. The caller is identified
    by the verified token's subject, else by the client address; a request whose
    token is refused is charged to its address (so guessing tokens is limited too).
    The caller is kept on ``request.state.caller``, the route on ``request.state.route``.
    """
    api_route = request.scope.get("route")
    path = api_route.path if isinstance(api_route, APIRoute) else request.url.path
    route = route_for(request.method, path)
    if route is None:
        raise UndeclaredRoute("this route declares no permission")
    request.state.route = route
    if route.permission == PUBLIC:
        await enforce_rate_limit(request, route.limit, None)
        return
    try:
        caller = await _verified_caller(request)
    except DomainError:
        await enforce_rate_limit(request, route.limit, None)
        raise
    await enforce_rate_limit(request, route.limit, caller.user_id)
    request.state.caller = caller
    reads = current_scope()
    if reads is not None:  # the request's reads see the client's token and the session's own writes
        positions = session_positions(request.app.state)
        header = request.headers.get("strata-consistency")
        signer = consistency_signer(request.app.state)
        await read_after(reads, header, caller, positions, signer, ask_shared=request.method in ("GET", "HEAD"))
    permission = route.permission
    if permission == AUTHENTICATED:
        return
    if permission.endswith(OR_SELF):
        permission = permission.removesuffix(OR_SELF)
        if request.path_params.get("user_id") == caller.user_id:
            return
    permissions: PermissionCache = request.app.state.permissions
    if permission not in await permissions.permissions(caller.roles):
        raise Forbidden(f"this route needs the permission {permission!r}")


async def _verified_caller(request: Request) -> AccessClaims:
    verifier: TokenVerifier = request.app.state.verifier
    caller = await verifier.verify_header(request.headers.get("authorization"))
    # Fail closed: a replica that has not read every revocation (catching up at start, or cut off from Kafka)
    # cannot vouch for a valid-looking token, so it answers 503 with Retry-After (another replica, or later).
    progress: FeedProgress = request.app.state.revocation_progress
    if progress.state is FeedState.CATCHING_UP:
        await progress.wait_caught_up(CATCH_UP_WAIT_S)
    progress.check_current()
    revocations: Revocations = request.app.state.revocations
    refusal = revocations.refusal(caller)
    if refusal is not None:
        raise InvalidToken(refusal, error="invalid_token")
    return caller


def caller_of(request: Request) -> AccessClaims:
    """The verified caller of a non-public route (set by :func:`authorize`)."""
    caller = getattr(request.state, "caller", None)
    if not isinstance(caller, AccessClaims):
        raise UndeclaredRoute("route used the caller without declaring a permission")
    return caller
