"""Routes of the users service."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from strata.serve_apps.gateway._access import PermissionCache, caller_of
from strata.serve_apps.gateway._auth_routes import PROBLEMS
from strata.serve_apps.gateway._services import service
from strata.serve_apps.gateway._tokens import AccessClaims

Caller = Annotated[AccessClaims, Depends(caller_of)]

router = APIRouter(tags=["users"], responses=PROBLEMS)


@router.get("/v1/users/me", summary="The caller's profile")
async def me(caller: Caller) -> dict[str, Any]:
    return dict(await service("users").get_profile.remote(caller.user_id))


@router.get("/v1/users/me/permissions", summary="The caller's roles and what they allow")
async def my_permissions(caller: Caller, request: Request) -> dict[str, Any]:
    cache: PermissionCache = request.app.state.permissions
    return {"roles": list(caller.roles), "permissions": sorted(await cache.permissions(caller.roles))}
