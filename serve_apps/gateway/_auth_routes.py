"""Routes of the auth service, and the dependency that authenticates a caller at the edge.

Each route reaches the auth service through the replica's one :class:`~strata.serve_apps.auth.AuthClient`;
its typed answers are the response bodies, and its errors keep their class, so they become problem+json with
their status, slug and ``Retry-After``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from strata.schemas import (
    ChangePasswordRequest,
    Jwks,
    LoginRequest,
    RefreshRequest,
    Registered,
    RegisterRequest,
    Session,
    TokenPair,
)
from strata.serve_apps.gateway._access import caller_of
from strata.serve_apps.gateway._deps import AuthDep
from strata.serve_apps.gateway._json_bodies import JsonBodyRoute
from strata.serve_apps.gateway._problems import problem_responses
from strata.serve_apps.gateway._ratelimit import client_address
from strata.serve_apps.gateway._tokens import AccessClaims

Caller = Annotated[AccessClaims, Depends(caller_of)]


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def _client(request: Request) -> str:
    # The same trusted address the rate limits use (X-Forwarded-For only from strata's TLS front).
    return client_address(request)


# Errors every route may give (401/403 by permission, 413/422/429/503/504) are added to the OpenAPI document
# from the routing table (_openapi.py); `responses=` below lists what only the auth service answers.
router = APIRouter(tags=["auth"], route_class=JsonBodyRoute)  # bodies parsed once, nesting bounded


@router.post(
    "/v1/auth/register",
    status_code=status.HTTP_201_CREATED,
    summary="Create an account",
    responses=problem_responses(409, 422),
)
async def register(body: RegisterRequest, auth: AuthDep, request: Request) -> Registered:
    return await auth.register(str(body.email), body.password, request_id=_request_id(request))


@router.post("/v1/auth/login", summary="Exchange email and password for tokens", responses=problem_responses(401, 429))
async def login(body: LoginRequest, auth: AuthDep, request: Request) -> TokenPair:
    return await auth.login(str(body.email), body.password, client=_client(request), request_id=_request_id(request))


@router.post(
    "/v1/auth/refresh", summary="Rotate a refresh token into a new token pair", responses=problem_responses(401)
)
async def refresh(body: RefreshRequest, auth: AuthDep, request: Request) -> TokenPair:
    return await auth.refresh(body.refresh_token, request_id=_request_id(request))


@router.post("/v1/auth/logout", status_code=status.HTTP_204_NO_CONTENT, summary="End the refresh token's session")
async def logout(body: RefreshRequest, auth: AuthDep, request: Request) -> Response:
    await auth.logout(body.refresh_token, request_id=_request_id(request))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/v1/auth/logout-all",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="End every session of the caller",
    responses=problem_responses(404),
)
async def logout_all(caller: Caller, auth: AuthDep, request: Request) -> Response:
    await auth.logout_all(caller.user_id, request_id=_request_id(request))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/v1/auth/password",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Change the caller's password",
    description="Ends every session of the caller: log in again with the new password.",
    responses=problem_responses(401, 403, 404, 422, 429),
)
async def change_password(body: ChangePasswordRequest, caller: Caller, auth: AuthDep, request: Request) -> Response:
    await auth.change_password(
        caller.user_id, body.current_password, body.new_password, request_id=_request_id(request)
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/v1/auth/session", summary="What the caller's access token says")
async def session(caller: Caller) -> Session:
    return Session(
        user_id=caller.user_id,
        roles=list(caller.roles),
        session_id=caller.session_id,
        expires_at=caller.expires_at,
    )


@router.get("/.well-known/jwks.json", summary="Public keys that verify access tokens")
async def jwks(auth: AuthDep, response: Response) -> Jwks:
    response.headers["Cache-Control"] = "public, max-age=60"
    return await auth.jwks()
