"""The route-permission table and the permission cache (no Ray, no services)."""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute

from strata.serve_apps.gateway import api
from strata.serve_apps.gateway._access import AUTHENTICATED, PUBLIC, ROUTE_PERMISSIONS, PermissionCache


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
    assert routes - set(ROUTE_PERMISSIONS) == set(), "routes without a declared permission"
    stale = {key for key in ROUTE_PERMISSIONS if key not in routes and key[1] != "/openapi.json"}
    assert stale == set(), "table entries for routes that no longer exist"


def test_only_the_expected_routes_are_public() -> None:
    public = {path for (_, path), permission in ROUTE_PERMISSIONS.items() if permission == PUBLIC}
    assert public == {
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/.well-known/jwks.json",
        "/v1/auth/register",
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/auth/logout",
    }


def test_permissions_are_either_markers_or_resource_actions() -> None:
    for permission in ROUTE_PERMISSIONS.values():
        assert permission in (PUBLIC, AUTHENTICATED) or permission.removesuffix(" or self").count(":") == 1, permission


async def test_the_permission_cache_unions_roles_and_refreshes_after_its_ttl() -> None:
    now = [0.0]
    fetches = []
    mapping = {"member": ["profile:read", "data:write"], "viewer": ["profile:read"]}

    async def source() -> dict[str, list[str]]:
        fetches.append(now[0])
        return mapping

    cache = PermissionCache(source, clock=lambda: now[0])
    assert await cache.permissions(("viewer", "member")) == {"profile:read", "data:write"}
    assert await cache.permissions(("nobody",)) == frozenset()
    assert len(fetches) == 1
    mapping = {"viewer": []}
    now[0] += 31
    assert await cache.permissions(("viewer",)) == frozenset()
    assert len(fetches) == 2
