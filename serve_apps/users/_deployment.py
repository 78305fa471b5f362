"""The users service as a Serve deployment (an application without an HTTP route, reached by handle).

Thin: each method runs one unit of work of :mod:`~strata.serve_apps.users._profiles`
or :mod:`~strata.serve_apps.users._admin`. Answers are the models of
:mod:`strata.schemas` (``Profile``, ``UserPage``, ...), the same ones the
gateway answers with; it implements
:class:`~strata.contracts.UsersOperations` (mypy checks it, :func:`_implements`), and callers reach it
through :class:`~strata.contracts.UsersClient`. Client errors are
:class:`~strata.schemas.DomainError` subclasses (listed in ``_admin``), which
the gateway answers as problem+json.
"""

from __future__ import annotations

from collections.abc import Sequence

from ray import serve

from strata.actors.postgres import DatabaseUnavailable
from strata.contracts import UsersOperations
from strata.schemas import DeletedUser, Profile, RolePermissions, UserPage
from strata.serve_apps._entry import service_app
from strata.serve_apps._replica import ServiceReplica
from strata.serve_apps.users import _admin, _profiles


@serve.deployment  # its options are in cluster/serve.yaml, the one place for them
class UsersService(ServiceReplica):
    """Replica of the users service; owns schema ``users`` and keeps its consumer group of auth events running."""

    service = "users"

    async def get_profile(self, user_id: str) -> Profile:
        """The caller's profile (created if its ``registered`` event has not arrived yet).

        The hot path is one read (on a standby when one may serve it); only a profile that does not exist there yet
        costs a transaction on the primary."""
        user = _admin.user_uuid(user_id)
        profile = await self.db.read(_profiles.find_profile, user)
        if profile is not None:
            return profile
        return await self.db.run_in_transaction(_profiles.get_or_create_profile, user)

    async def update_profile(self, user_id: str, display_name: str | None, *, request_id: str | None = None) -> Profile:
        """The caller's profile after setting its display name."""
        return await self.db.run_in_transaction(_admin.update_profile, user_id, display_name, request_id=request_id)

    async def list_users(
        self, *, cursor: str | None = None, limit: int = 50, role: str | None = None, email_prefix: str | None = None
    ) -> UserPage:
        """One page of profiles, oldest first, and the cursor of the next."""
        return await self.db.read(_admin.list_users, cursor=cursor, limit=limit, role=role, email_prefix=email_prefix)

    async def get_user(self, user_id: str) -> Profile:
        """One profile; never creates it."""
        return await self.db.read(_admin.get_user, user_id)

    async def set_roles(
        self, user_id: str, roles: Sequence[str], *, request_id: str | None = None, actor: str | None = None
    ) -> Profile:
        """The profile after replacing its roles (``perm_version`` bumped when they changed)."""
        return await self.db.run_in_transaction(
            _admin.set_roles, user_id, list(roles), request_id=request_id, actor=actor
        )

    async def disable(self, user_id: str, *, request_id: str | None = None, actor: str | None = None) -> Profile:
        """The profile, disabled."""
        return await self.db.run_in_transaction(_admin.disable, user_id, request_id=request_id, actor=actor)

    async def enable(self, user_id: str, *, request_id: str | None = None, actor: str | None = None) -> Profile:
        """The profile, enabled."""
        return await self.db.run_in_transaction(_admin.enable, user_id, request_id=request_id, actor=actor)

    async def delete_user(
        self, user_id: str, *, request_id: str | None = None, actor: str | None = None
    ) -> DeletedUser:
        """The id of the deleted user."""
        return await self.db.run_in_transaction(_admin.delete_user, user_id, request_id=request_id, actor=actor)

    async def role_permissions(self) -> RolePermissions:
        """Every role and what it grants (the gateway caches it).

        Read on the primary: the gateway asks after an event said the roles changed, and a standby may not have
        replayed that change yet. With the primary unreachable, the standby's copy (as of the last change it
        replayed) keeps the gateway answering reads."""
        try:
            return await self.db.run_in_transaction(_profiles.role_permissions)
        except DatabaseUnavailable:
            return await self.db.read(_profiles.role_permissions)


app = service_app(UsersService)


def _implements(service: UsersService) -> UsersOperations:
    """Never called: mypy checks here that the deployment implements every call of its contract, with its signature
    (the class as written: ``@serve.deployment`` leaves what mypy sees of it unchanged)."""
    return service
