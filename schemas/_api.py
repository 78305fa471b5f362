"""Bodies of strata's HTTP API: what clients send and receive (validated at the edge)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

Password = Annotated[str, Field(min_length=1, max_length=1024, description="The password, as typed.")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class RegisterRequest(_Body):
    email: EmailStr = Field(description="The account's email address (its login name).")
    password: Password


class LoginRequest(_Body):
    email: EmailStr
    password: Password


class RefreshRequest(_Body):
    refresh_token: Annotated[str, Field(min_length=16, max_length=256, description="The current refresh token.")]


class ChangePasswordRequest(_Body):
    current_password: Password
    new_password: Password


class Registered(BaseModel):
    user_id: str = Field(description="The new account's id (the `sub` of its tokens).")
    email: str


class TokenPair(BaseModel):
    access_token: str = Field(description="A signed JWT (EdDSA or RS256, `kid` header); verify with the JWKS.")
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_token: str = Field(description="Opaque; rotated on every refresh. Reusing an old one ends the session.")
    refresh_expires_in: int = Field(description="Seconds until the refresh token expires.")


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="Stable URI of the problem type.")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = Field(default=None, description="urn:strata:request:<request id>")
    request_id: str | None = None


class Jwks(BaseModel):
    keys: list[dict[str, Any]] = Field(description="Public keys that verify strata's access tokens (active, previous).")


class ProfileUpdate(_Body):
    display_name: Annotated[
        str | None, Field(default=None, max_length=100, description="Shown name; null clears it.")
    ] = None


class RolesUpdate(_Body):
    roles: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=64)]],
        Field(min_length=1, max_length=16, description="The user's roles from now on (e.g. admin, member, viewer)."),
    ]
