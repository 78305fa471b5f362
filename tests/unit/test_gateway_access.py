"""The routing table (permissions, services, rate-limit classes) and the permission cache (no Ray, no services)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.routing import APIRoute

from strata.schemas import RolePermissions, ServiceUnavailable
from strata.serve_apps.gateway import api
from strata.serve_apps.gateway._access import AUTHENTICATED, PUBLIC, ROUTE_TABLE, ROUTES, PermissionCache


def _flatten(routes: list[Any]) -> list[Any]:
    # FastAPI keeps included routers as nested entries (no prefixes are used by the gateway).
    flat = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        flat += _flatten(inner.routes) if inner is not None else [route]
    return flat


def _routes() -> set[tuple[str, str]]:
    return {(m, r.path) for r in _flatten(list(api.routes)) if isinstance(r, APIRoute) for m in r.methods}


def test_every_route_declares_its_permission_and_the_table_has_no_stale_entry() -> None:
    routes = _routes()
    assert routes - set(ROUTE_TABLE) == set(), "routes missing from the routing table"
    stale = {key for key in ROUTE_TABLE if key not in routes and key[1] != "/openapi.json"}
    assert stale == set(), "table entries for routes that no longer exist"
    assert len(ROUTE_TABLE) == len(ROUTES), "a route appears twice in the table"


def test_only_the_expected_routes_are_public() -> None:
    public = {route.path for route in ROUTES if route.permission == PUBLIC}
    assert public == {
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/docs",
        "/docs/assets/{name}",
        "/.well-known/jwks.json",
        "/v1/auth/register",
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/auth/logout",
    }


def test_permissions_are_either_markers_or_resource_actions() -> None:
    for route in ROUTES:
        permission = route.permission
        assert permission in (PUBLIC, AUTHENTICATED) or permission.removesuffix(" or self").count(":") == 1, route


def test_credential_routes_are_limited_strictest_refresh_apart_reads_as_reads_and_only_probes_not_at_all() -> None:
    classes = {(route.method, route.path): route.limit for route in ROUTES}
    strict = {key for key, limit in classes.items() if limit == "auth"}
    assert strict == {
        ("POST", "/v1/auth/register"),
        ("POST", "/v1/auth/login"),
        ("POST", "/v1/auth/password"),
    }
    # Refresh has a bucket of its own: an address's failed logins never block its refreshes (the auth service limits
    # them per session and per account).
    assert {key for key, limit in classes.items() if limit == "refresh"} == {("POST", "/v1/auth/refresh")}
    unlimited = {path for (_, path), limit in classes.items() if limit == "none"}
    assert unlimited == {"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/assets/{name}"}
    for (method, path), limit in classes.items():
        if limit in ("auth", "refresh", "none"):
            continue
        assert limit == ("read" if method in ("GET", "HEAD") else "write"), (method, path, limit)


_RESOURCE_APPS = {"collections": "data"}
"""Path segments that are not the name of the service answering them."""


def test_each_route_names_the_service_its_path_belongs_to() -> None:
    for route in ROUTES:
        segments = route.path.split("/")
        if route.path.startswith("/v1/"):
            assert route.app in (_RESOURCE_APPS.get(segments[2], segments[2]), "gateway"), route
        elif route.path == "/.well-known/jwks.json":
            assert route.app == "auth"
        else:
            assert route.app == "gateway", route


async def test_the_permission_cache_unions_roles_and_refreshes_after_its_ttl() -> None:
    now = [0.0]
    fetches = []
    mapping = {"member": ["profile:read", "data:write"], "viewer": ["profile:read"]}

    async def source() -> RolePermissions:
        fetches.append(now[0])
        return RolePermissions(roles=mapping)

    cache = PermissionCache(source, clock=lambda: now[0])
    assert await cache.permissions(("viewer", "member")) == {"profile:read", "data:write"}
    assert await cache.permissions(("nobody",)) == frozenset()
    assert len(fetches) == 1
    mapping = {"viewer": []}
    now[0] += 31
    assert await cache.permissions(("viewer",)) == frozenset()
    assert len(fetches) == 2


async def test_a_failed_permissions_fetch_is_backed_off_and_the_last_map_serves_on() -> None:
    now = [0.0]
    fetches: list[float] = []
    down = [False]

    async def source() -> RolePermissions:
        fetches.append(now[0])
        if down[0]:
            raise ServiceUnavailable("users is down")
        return RolePermissions(roles={"member": ["profile:read"]})

    cache = PermissionCache(source, clock=lambda: now[0])
    assert await cache.permissions(("member",)) == {"profile:read"}
    down[0] = True
    now[0] += 31
    for _ in range(50):
        assert await cache.permissions(("member",)) == {"profile:read"}, "the map fetched last serves on"
    assert len(fetches) == 2, "one failed fetch, then backing off: not one per request"
    now[0] += 1.5  # past the first pause (1 s)
    await cache.permissions(("member",))
    now[0] += 1.5  # inside the second pause (2 s)
    await cache.permissions(("member",))
    assert len(fetches) == 3
    down[0] = False
    now[0] += 2
    await cache.permissions(("member",))
    assert len(fetches) == 4


async def test_a_replica_that_never_had_the_permissions_map_answers_503_not_403() -> None:
    async def source() -> RolePermissions:
        raise ServiceUnavailable("users is down")

    cache = PermissionCache(source, clock=lambda: 0.0)
    with pytest.raises(ServiceUnavailable) as caught:
        await cache.permissions(("member",))
    assert caught.value.status == 503 and caught.value.retry_after is not None


def test_every_data_route_is_in_the_table_reads_need_data_read_and_changes_data_write() -> None:
    data_routes = {key for key in _routes() if key[1].startswith("/v1/collections")}
    assert len(data_routes) == 17
    for method, path in data_routes:
        route = ROUTE_TABLE[(method, path)]
        reading = method == "GET"
        assert route.app == "data", route
        assert route.permission == ("data:read" if reading else "data:write"), route
        assert route.limit == ("read" if reading else "write"), route
