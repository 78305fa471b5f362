"""The users service's contract: its operations (:class:`UsersOperations`) and its typed client (:class:`UsersClient`).

The deployment (``strata.serve_apps.users.UsersService``) implements the Protocol, and mypy checks it does; the client
offers it, one hop away. Importing this module loads no server code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from strata.contracts._client import ServiceClient
from strata.schemas import DeletedUser, Profile, RolePermissions, UserPage


class UsersOperations(Protocol):
    """The calls of the users service,
    as its deployment (``UsersService``) implements them and :class:`UsersClient` offers them.

    mypy checks both sides against this Protocol: a signature changed on one side only is a type error.
    """

    async def get_profile(self, user_id: str) -> Profile:
        """The profile of ``user_id`` (a token's subject), created on the spot while its registration is on its way."""

    async def update_profile(self, user_id: str, display_name: str | None, *, request_id: str | None = None) -> Profile:
        """The profile after setting its display name (``None`` clears it); created first if missing."""

    async def list_users(
        self, *, cursor: str | None = None, limit: int = 50, role: str | None = None, email_prefix: str | None = None
    ) -> UserPage:
        """One page of profiles, oldest first; pass its ``next_cursor`` as ``cursor`` for the next one.

        ``role`` keeps users holding it, ``email_prefix`` those whose email starts with it (any case).
        """

    async def get_user(self, user_id: str) -> Profile:
        """The profile of ``user_id``; never creates one."""

    async def set_roles(
        self, user_id: str, roles: Sequence[str], *, request_id: str | None = None, actor: str | None = None
    ) -> Profile:
        """The profile after replacing its roles (sorted, without duplicates); the same roles again change nothing."""

    async def disable(self, user_id: str, *, request_id: str | None = None, actor: str | None = None) -> Profile:
        """The profile, disabled (idempotent); the user's tokens stop working at the edge."""

    async def enable(self, user_id: str, *, request_id: str | None = None, actor: str | None = None) -> Profile:
        """The profile, enabled again (idempotent); the user may log in again once the auth service has the event."""

    async def delete_user(
        self, user_id: str, *, request_id: str | None = None, actor: str | None = None
    ) -> DeletedUser:
        """Delete the profile; the auth service deletes the account when the ``deleted`` event reaches it."""

    async def role_permissions(self) -> RolePermissions:
        """Every role with the permissions it grants."""


class UsersClient(ServiceClient):
    """Profiles, listing, roles, disabling, enabling and deleting users, and the role -> permissions map.

    Errors arrive as the service raised them: :class:`~strata.schemas.UserNotFound` (no such user, or an id that
    is no UUID), :class:`~strata.schemas.Unprocessable` (a malformed cursor, a limit outside 1..200, no or unknown
    roles), :class:`~strata.schemas.Conflict` (``last-admin``: the change would leave no enabled admin),
    :class:`~strata.schemas.ServiceUnavailable` (the service refused the call).
    ``request_id`` is the HTTP request that caused a change and ``actor`` who made it; both travel on its event.
    """

    app = "users"
    __slots__ = ()

    async def get_profile(self, user_id: str) -> Profile:
        """The profile of ``user_id`` (a token's subject), created on the spot while its registration is on its way."""
        return await self._call(UsersOperations.get_profile, user_id)

    async def update_profile(self, user_id: str, display_name: str | None, *, request_id: str | None = None) -> Profile:
        """The profile after setting its display name (``None`` clears it); created first if missing."""
        return await self._call(UsersOperations.update_profile, user_id, display_name, request_id=request_id)

    async def list_users(
        self, *, cursor: str | None = None, limit: int = 50, role: str | None = None, email_prefix: str | None = None
    ) -> UserPage:
        """One page of profiles, oldest first; pass its ``next_cursor`` as ``cursor`` for the next one.

        ``role`` keeps users holding it, ``email_prefix`` those whose email starts with it (any case).
        """
        return await self._call(
            UsersOperations.list_users, cursor=cursor, limit=limit, role=role, email_prefix=email_prefix
        )

    async def get_user(self, user_id: str) -> Profile:
        """The profile of ``user_id``; never creates one."""
        return await self._call(UsersOperations.get_user, user_id)

    async def set_roles(
        self, user_id: str, roles: Sequence[str], *, request_id: str | None = None, actor: str | None = None
    ) -> Profile:
        """The profile after replacing its roles (sorted, without duplicates); the same roles again change nothing."""
        return await self._call(UsersOperations.set_roles, user_id, list(roles), request_id=request_id, actor=actor)

    async def disable(self, user_id: str, *, request_id: str | None = None, actor: str | None = None) -> Profile:
        """The profile, disabled (idempotent); the user's tokens stop working at the edge."""
        return await self._call(UsersOperations.disable, user_id, request_id=request_id, actor=actor)

    async def enable(self, user_id: str, *, request_id: str | None = None, actor: str | None = None) -> Profile:
        """The profile, enabled again (idempotent); the user may log in again once the auth service has the event."""
        return await self._call(UsersOperations.enable, user_id, request_id=request_id, actor=actor)

    async def delete_user(
        self, user_id: str, *, request_id: str | None = None, actor: str | None = None
    ) -> DeletedUser:
        """Delete the profile; the auth service deletes the account when the ``deleted`` event reaches it."""
        return await self._call(UsersOperations.delete_user, user_id, request_id=request_id, actor=actor)

    async def role_permissions(self) -> RolePermissions:
        """Every role with the permissions it grants."""
        return await self._call(UsersOperations.role_permissions)


def _offers(client: UsersClient) -> UsersOperations:
    """Never called: mypy checks here that the client offers every call of the Protocol, with its signature."""
    return client
