"""Routes of the auth service, and the dependency that authenticates a caller at the edge."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status

from strata.schemas._api import (
    ChangePasswordRequest,
    Jwks,
    LoginRequest,
    Problem,
    RefreshRequest,
    Registered,
    RegisterRequest,
    TokenPair,
)
from strata.serve_apps.gateway._access import caller_of
from strata.serve_apps.gateway._services import service
from strata.serve_apps.gateway._tokens import AccessClaims

PROBLEMS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {"application/problem+json": {}}} for code in (400, 401, 403, 409, 422, 429)
}


Caller = Annotated[AccessClaims, Depends(caller_of)]


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


router = APIRouter(tags=["auth"], responses=PROBLEMS)


@router.post("/v1/auth/register", status_code=status.HTTP_201_CREATED, summary="Create an account")
async def register(body: RegisterRequest, request: Request) -> Registered:
    result = await service("auth").register.remote(str(body.email), body.password, _request_id(request))
    return Registered.model_validate(result)


@router.post("/v1/auth/login", summary="Exchange email and password for tokens")
async def login(body: LoginRequest, request: Request) -> TokenPair:
    result = await service("auth").login.remote(str(body.email), body.password, _client(request), _request_id(request))
    return TokenPair.model_validate(result)


@router.post("/v1/auth/refresh", summary="Rotate a refresh token into a new token pair")
async def refresh(body: RefreshRequest, request: Request) -> TokenPair:
    result = await service("auth").refresh.remote(body.refresh_token, _request_id(request))
    return TokenPair.model_validate(result)


@router.post("/v1/auth/logout", status_code=status.HTTP_204_NO_CONTENT, summary="End the refresh token's session")
async def logout(body: RefreshRequest, request: Request) -> Response:
    await service("auth").logout.remote(body.refresh_token, _request_id(request))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/v1/auth/logout-all", status_code=status.HTTP_204_NO_CONTENT, summary="End every session of the caller")
async def logout_all(caller: Caller, request: Request) -> Response:
    await service("auth").logout_all.remote(caller.user_id, _request_id(request))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/v1/auth/password", status_code=status.HTTP_204_NO_CONTENT, summary="Change the caller's password")
async def change_password(body: ChangePasswordRequest, caller: Caller, request: Request) -> Response:
    await service("auth").change_password.remote(
        caller.user_id, body.current_password, body.new_password, _request_id(request)
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/v1/auth/session", summary="What the caller's access token says")
async def session(caller: Caller) -> dict[str, Any]:
    return {
        "user_id": caller.user_id,
        "roles": list(caller.roles),
        "session_id": caller.session_id,
        "expires_at": caller.expires_at,
    }


@router.get("/.well-known/jwks.json", summary="Public keys that verify access tokens", response_model=Jwks)
async def jwks(response: Response) -> dict[str, Any]:
    response.headers["Cache-Control"] = "public, max-age=60"
    return dict(await service("auth").jwks.remote())
