"""Bodies of strata's HTTP API (what clients send and receive, validated at the edge) and what services answer.

A service's deployment answers its callers with these models, and the gateway answers HTTP clients with the same
ones: the contract between processes and the one on the wire are one set of types, shared by service and callers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

Password = Annotated[str, Field(min_length=1, max_length=1024, description="The password, as typed.")]

PLAIN_TEXT = r"^[^\x00-\x1f\x7f]*$"
"""Pattern of free text stored by a service: no control characters (PostgreSQL refuses NUL in text)."""
DATE_TIME: dict[str, Any] = {"format": "date-time"}


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


class RevokedSessions(BaseModel):
    """What a logout ended (an answer of the auth service; the HTTP routes answer 204)."""

    revoked_sessions: int = Field(ge=0, description="Sessions that were live and are now revoked.")


class PasswordChanged(BaseModel):
    """A password change (an answer of the auth service): every session of the account ended."""

    user_id: str
    revoked_sessions: int = Field(ge=0, description="Sessions that were live and are now revoked.")


class EnsuredAccount(BaseModel):
    """An account made sure of by an operator (``strata users create-admin``): found, or made (an auth answer)."""

    user_id: str
    email: str
    created: bool = Field(description="Made now (True), or it existed already (False).")
    password_set: bool = Field(
        default=False, description="An existing account's password was replaced by the operator's (``--existing``)."
    )
    revoked_sessions: int = Field(default=0, ge=0, description="Sessions of the existing account that were ended.")


class SigningKeyInfo(BaseModel):
    """A stored signing key, without its material."""

    kid: str
    alg: str
    activated_at: datetime
    retired_at: datetime | None = Field(description="Null while it is the active key.")


class SigningKeys(BaseModel):
    """Every stored signing key, newest first (an answer of the auth service)."""

    keys: list[SigningKeyInfo]


class KeyRotation(BaseModel):
    """A signing-key rotation (an answer of the auth service)."""

    kid: str = Field(description="The new active key, which signs from now on.")
    previous_kid: str | None = Field(description="The key it replaced (still in the JWKS); null if none was active.")


class ProfileUpdate(_Body):
    display_name: Annotated[
        str | None,
        Field(default=None, max_length=100, pattern=PLAIN_TEXT, description="Shown name; null clears it."),
    ] = None


RoleName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


class RolesUpdate(_Body):
    roles: Annotated[
        list[RoleName],
        Field(min_length=1, max_length=16, description="The user's roles from now on (e.g. admin, member, viewer)."),
    ]


class Session(BaseModel):
    """What the caller's verified access token says."""

    user_id: str = Field(description="The caller's id (the token's `sub`).")
    roles: list[str]
    session_id: str | None = Field(description="The login session the token belongs to.")
    expires_at: int = Field(description="When the access token expires, Unix seconds.")


class Profile(BaseModel):
    """A user's profile, as the users service keeps it."""

    user_id: str
    email: str | None = Field(description="Null until the account's registration has reached the users service.")
    display_name: str | None
    roles: list[str]
    disabled: bool
    perm_version: int = Field(description="Bumped on every role change; older tokens stop working at the edge.")
    version: int = Field(description="Bumped on every change of the profile.")
    created_at: str = Field(json_schema_extra=DATE_TIME)
    updated_at: str = Field(json_schema_extra=DATE_TIME)


class UserPage(BaseModel):
    items: list[Profile]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class Permissions(BaseModel):
    roles: list[str] = Field(description="The caller's roles, from the access token.")
    permissions: list[str] = Field(description="What those roles allow (sorted).")


class AuditEntry(BaseModel):
    """One event in the audit log."""

    event_id: str
    type: str = Field(description="The event type, e.g. strata.users.user.roles_changed.v1.")
    source: str
    subject: str | None
    actor: str | None = Field(description="Who caused the event (a user id, or `system`).")
    request_id: str | None = Field(description="The HTTP request that caused it (its X-Request-ID).")
    occurred_at: str = Field(json_schema_extra=DATE_TIME)
    recorded_at: str = Field(json_schema_extra=DATE_TIME)


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class DeletedUser(BaseModel):
    """What the users service answers when it deleted a profile (the auth service deletes the account on its event)."""

    user_id: str


class RolePermissions(BaseModel):
    """Every role with the permissions it grants, as the users service keeps them and each gateway replica caches."""

    roles: dict[str, list[str]] = Field(description="Role name -> its permissions (sorted); a role may grant none.")

    def granted(self, roles: tuple[str, ...] | list[str]) -> frozenset[str]:
        """What ``roles`` allow together (roles the map does not know grant nothing)."""
        return frozenset(permission for role in roles for permission in self.roles.get(role, ()))


# --- readiness: what every service answers the gateway's /readyz ----------------------------------------------------


class DatabaseCheck(BaseModel):
    """A service's path to PostgreSQL: ``up``, or ``down`` with the error's class name (or ``timeout``)."""

    status: Literal["up", "down"]
    error: str | None = None


class OutboxBacklog(BaseModel):
    """A service's unsent outbox rows and the age of the oldest (0 when none); or why they could not be read."""

    rows: int | None = None
    oldest_age_s: float | None = None
    error: str | None = Field(default=None, description="The error's class name, when the backlog was not read.")


class StandbyCheck(BaseModel):
    """A standby as one service replica routes reads to it: ``streaming`` (in read rotation), ``lagging`` (out of
    rotation, past a lag bound or not caught up yet) or ``down`` (not answering, or no longer in recovery)."""

    name: str
    status: Literal["streaming", "lagging", "down"]
    in_rotation: bool
    lag_bytes: int | None = None
    lag_s: float | None = None
    replay_paused: bool = False
    error: str | None = None


class ServiceReadiness(BaseModel):
    """One service's readiness report. ``outbox`` is there for a service with an outbox whose database is up;
    ``standbys`` for a service that reads from standbys."""

    database: DatabaseCheck
    outbox: OutboxBacklog | None = None
    standbys: list[StandbyCheck] = Field(default_factory=list)
