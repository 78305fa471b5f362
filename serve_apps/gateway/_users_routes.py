"""Routes of the users service: the caller's own profile, and user administration."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status

from strata.schemas._api import ProfileUpdate, RolesUpdate
from strata.serve_apps.gateway._access import PermissionCache, caller_of
from strata.serve_apps.gateway._auth_routes import PROBLEMS
from strata.serve_apps.gateway._services import service
from strata.serve_apps.gateway._tokens import AccessClaims

Caller = Annotated[AccessClaims, Depends(caller_of)]

router = APIRouter(tags=["users"], responses=PROBLEMS)


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


@router.get("/v1/users/me", summary="The caller's profile")
async def me(caller: Caller) -> dict[str, Any]:
    return dict(await service("users").get_profile.remote(caller.user_id))


@router.patch("/v1/users/me", summary="Change the caller's profile")
async def update_me(body: ProfileUpdate, caller: Caller, request: Request) -> dict[str, Any]:
    return dict(await service("users").update_profile.remote(caller.user_id, body.display_name, _request_id(request)))


@router.get("/v1/users/me/permissions", summary="The caller's roles and what they allow")
async def my_permissions(caller: Caller, request: Request) -> dict[str, Any]:
    cache: PermissionCache = request.app.state.permissions
    return {"roles": list(caller.roles), "permissions": sorted(await cache.permissions(caller.roles))}


@router.get("/v1/users", summary="List users (cursor pages, filters)")
async def list_users(
    cursor: Annotated[str | None, Query(max_length=256)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    role: Annotated[str | None, Query(max_length=64)] = None,
    email_prefix: Annotated[str | None, Query(max_length=254)] = None,
) -> dict[str, Any]:
    return dict(
        await service("users").list_users.remote(cursor=cursor, limit=limit, role=role, email_prefix=email_prefix)
    )


@router.get("/v1/users/{user_id}", summary="One user (admins, or the user themself)")
async def get_user(user_id: str) -> dict[str, Any]:
    return dict(await service("users").get_user.remote(user_id))


@router.put("/v1/users/{user_id}/roles", summary="Replace a user's roles")
async def set_roles(user_id: str, body: RolesUpdate, caller: Caller, request: Request) -> dict[str, Any]:
    return dict(await service("users").set_roles.remote(user_id, body.roles, _request_id(request), caller.user_id))


@router.post("/v1/users/{user_id}/disable", summary="Disable a user: their tokens stop working at the edge")
async def disable(user_id: str, caller: Caller, request: Request) -> dict[str, Any]:
    return dict(await service("users").disable.remote(user_id, _request_id(request), caller.user_id))


@router.delete("/v1/users/{user_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a user")
async def delete_user(user_id: str, caller: Caller, request: Request) -> Response:
    await service("users").delete_user.remote(user_id, _request_id(request), caller.user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
