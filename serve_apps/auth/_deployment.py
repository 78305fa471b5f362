"""The auth service as a Serve deployment (an application without an HTTP route, reached by handle).

Thin: each method hands over to :class:`~strata.serve_apps.auth._service.Authenticator`,
whose docstrings state the contracts. Answers are models of :mod:`strata.schemas`
and client errors :class:`~strata.schemas.DomainError` subclasses; callers reach
these methods through :class:`~strata.serve_apps.auth.AuthClient`, which declares
the same types.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ray import serve

from strata.actors.postgres import DatabaseError
from strata.contracts import AuthOperations
from strata.schemas import (
    EnsuredAccount,
    Jwks,
    KeyRotation,
    PasswordChanged,
    Registered,
    RevokedSessions,
    SigningKeys,
    TokenPair,
)
from strata.serve_apps._entry import service_app
from strata.serve_apps._replica import ServiceReplica
from strata.serve_apps.auth._service import Authenticator

logger = logging.getLogger(__name__)

_HOUSEKEEPING_EVERY_S = 600.0
_HOUSEKEEPING_TIMEOUT_S = 2.0  # well within the health check's timeout


@serve.deployment  # its options are in cluster/serve.yaml, the one place for them
class AuthService(ServiceReplica):
    """Replica of the auth service; owns schema ``auth`` in PostgreSQL: accounts, sessions, signing keys.

    It also keeps the ``auth`` consumer group running, which applies the users
    service's role changes, disabling and deletion to the accounts.
    """

    service = "auth"

    async def __init__(self) -> None:  # type: ignore[misc]  # Serve awaits an async constructor
        await super().__init__()
        self._auth = Authenticator(self.db, self._settings)
        self._housekept_at = time.monotonic()
        try:
            kid = await self._auth.start()
            logger.info("auth replica signs with key %s", kid)
        except DatabaseError as exc:  # PostgreSQL down: the first token made will create or read the key
            logger.warning("could not check the signing key at start: %s", type(exc).__name__)

    async def register(self, email: str, password: str, request_id: str | None = None) -> Registered:
        return await self._auth.register(email, password, request_id)

    async def login(
        self, email: str, password: str, client: str | None = None, request_id: str | None = None
    ) -> TokenPair:
        return await self._auth.login(email, password, client, request_id)

    async def refresh(self, refresh_token: str, request_id: str | None = None) -> TokenPair:
        return await self._auth.refresh(refresh_token, request_id)

    async def logout(self, refresh_token: str, request_id: str | None = None) -> RevokedSessions:
        return await self._auth.logout(refresh_token, request_id)

    async def logout_all(self, user_id: str, request_id: str | None = None) -> RevokedSessions:
        return await self._auth.logout_all(user_id, request_id)

    async def change_password(
        self, user_id: str, current_password: str, new_password: str, request_id: str | None = None
    ) -> PasswordChanged:
        return await self._auth.change_password(user_id, current_password, new_password, request_id)

    async def jwks(self) -> Jwks:
        return await self._auth.jwks()

    async def rotate_keys(self) -> KeyRotation:
        return await self._auth.rotate_keys()

    async def signing_keys(self) -> SigningKeys:
        return await self._auth.signing_keys()

    async def ensure_account(self, email: str, password: str, *, existing: bool = False) -> EnsuredAccount:
        return await self._auth.ensure_account(email, password, existing=existing)

    async def check_health(self) -> None:
        await super().check_health()
        # Stale login counts and long-expired refresh tokens go, now and then; a database outage only delays it.
        if time.monotonic() - self._housekept_at >= _HOUSEKEEPING_EVERY_S:
            self._housekept_at = time.monotonic()
            try:
                await asyncio.wait_for(self._auth.housekeeping(), timeout=_HOUSEKEEPING_TIMEOUT_S)
            except (DatabaseError, TimeoutError) as exc:
                logger.info("auth housekeeping skipped: %s", type(exc).__name__)


app = service_app(AuthService)


def _implements(service: AuthService) -> AuthOperations:
    """Never called: mypy checks here that the deployment implements every call of its contract, with its signature
    (the class as written: ``@serve.deployment`` leaves what mypy sees of it unchanged)."""
    return service
