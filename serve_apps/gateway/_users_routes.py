"""Routes of the users service: the caller's own profile, and user administration."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from strata.schemas import PLAIN_TEXT, Permissions, Profile, ProfileUpdate, RolesUpdate, UserPage
from strata.serve_apps.gateway._access import PermissionCache, caller_of
from strata.serve_apps.gateway._deps import UsersDep
from strata.serve_apps.gateway._json_bodies import JsonBodyRoute
from strata.serve_apps.gateway._problems import problem_responses
from strata.serve_apps.gateway._tokens import AccessClaims

Caller = Annotated[AccessClaims, Depends(caller_of)]

# Errors every route may give are added to the OpenAPI document from the routing table (_openapi.py).
router = APIRouter(tags=["users"], route_class=JsonBodyRoute)  # bodies parsed once, nesting bounded


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


@router.get("/v1/users/me", summary="The caller's profile")
async def me(caller: Caller, users: UsersDep) -> Profile:
    return await users.get_profile(caller.user_id)


@router.patch("/v1/users/me", summary="Change the caller's profile")
async def update_me(body: ProfileUpdate, caller: Caller, users: UsersDep, request: Request) -> Profile:
    return await users.update_profile(caller.user_id, body.display_name, request_id=_request_id(request))


@router.get("/v1/users/me/permissions", summary="The caller's roles and what they allow")
async def my_permissions(caller: Caller, request: Request) -> Permissions:
    cache: PermissionCache = request.app.state.permissions
    return Permissions(roles=list(caller.roles), permissions=sorted(await cache.permissions(caller.roles)))


@router.get("/v1/users", summary="List users (cursor pages, filters)")
async def list_users(
    users: UsersDep,
    cursor: Annotated[str | None, Query(max_length=256, description="`next_cursor` of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    role: Annotated[str | None, Query(max_length=64, pattern=PLAIN_TEXT, description="Users holding it.")] = None,
    email_prefix: Annotated[str | None, Query(max_length=254, pattern=PLAIN_TEXT)] = None,
) -> UserPage:
    return await users.list_users(cursor=cursor, limit=limit, role=role, email_prefix=email_prefix)


@router.get("/v1/users/{user_id}", summary="One user (admins, or the user themself)", responses=problem_responses(404))
async def get_user(user_id: str, users: UsersDep) -> Profile:
    return await users.get_user(user_id)


@router.put("/v1/users/{user_id}/roles", summary="Replace a user's roles", responses=problem_responses(404, 409, 422))
async def set_roles(user_id: str, body: RolesUpdate, caller: Caller, users: UsersDep, request: Request) -> Profile:
    return await users.set_roles(user_id, body.roles, request_id=_request_id(request), actor=caller.user_id)


@router.post(
    "/v1/users/{user_id}/disable",
    summary="Disable a user: their tokens stop working at the edge",
    responses=problem_responses(404, 409),
)
async def disable(user_id: str, caller: Caller, users: UsersDep, request: Request) -> Profile:
    return await users.disable(user_id, request_id=_request_id(request), actor=caller.user_id)


@router.post(
    "/v1/users/{user_id}/enable",
    summary="Enable a disabled user: they may log in again (their old tokens stay refused)",
    responses=problem_responses(404),
)
async def enable(user_id: str, caller: Caller, users: UsersDep, request: Request) -> Profile:
    return await users.enable(user_id, request_id=_request_id(request), actor=caller.user_id)


@router.delete(
    "/v1/users/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a user",
    responses=problem_responses(404, 409),
)
async def delete_user(user_id: str, caller: Caller, users: UsersDep, request: Request) -> Response:
    await users.delete_user(user_id, request_id=_request_id(request), actor=caller.user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
