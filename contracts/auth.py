"""The auth service's contract: its operations (:class:`AuthOperations`) and its typed client (:class:`AuthClient`).

What each call answers and raises is documented on the service's ``Authenticator``; the deployment
(``strata.serve_apps.auth.AuthService``) implements the Protocol, and mypy checks it does. Importing this module loads
no server code.
"""

from __future__ import annotations

from typing import Protocol

from strata.contracts._client import ServiceClient
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


class AuthOperations(Protocol):
    """The calls of the auth service,
    as its deployment (``AuthService``) implements them and :class:`AuthClient` offers them.

    mypy checks both sides against this Protocol: a signature changed on one side only is a type error.
    """

    async def register(self, email: str, password: str, *, request_id: str | None = None) -> Registered:
        """A new account (``Conflict`` when the email has one; the password policy's ``Unprocessable``)."""

    async def login(
        self, email: str, password: str, *, client: str | None = None, request_id: str | None = None
    ) -> TokenPair:
        """``client`` is the caller's address, which failed logins are counted against besides the email."""

    async def refresh(self, refresh_token: str, *, request_id: str | None = None) -> TokenPair:
        """A new pair for a refresh token, which is spent (a spent one again ends its whole family)."""

    async def logout(self, refresh_token: str, *, request_id: str | None = None) -> RevokedSessions:
        """End the session the refresh token belongs to."""

    async def logout_all(self, user_id: str, *, request_id: str | None = None) -> RevokedSessions:
        """End every session of the user."""

    async def change_password(
        self, user_id: str, current_password: str, new_password: str, *, request_id: str | None = None
    ) -> PasswordChanged:
        """A new password, once the current one is checked; the user's other sessions end."""

    async def jwks(self) -> Jwks:
        """The public keys tokens are verified with (the gateway caches them)."""

    async def rotate_keys(self) -> KeyRotation:
        """A new active signing key; this replica signs with it at once, the others within the key cache's TTL."""

    async def signing_keys(self) -> SigningKeys:
        """Every stored signing key without its material, newest first."""

    async def ensure_account(self, email: str, password: str, *, existing: bool = False) -> EnsuredAccount:
        """The account of ``email``, made with ``password`` if there is none; an existing one is refused
        (``Conflict``, ``account-exists``) unless ``existing``, then given ``password`` with its sessions ended
        (an operator's call)."""


class AuthClient(ServiceClient):
    """Calls the auth service one hop away; what each call answers and raises is documented on
    :class:`~strata.serve_apps.auth.Authenticator`, whose errors arrive here as the same
    :class:`~strata.schemas.DomainError` classes (status, slug, detail and ``retry_after`` kept).

    ``request_id`` (keyword-only everywhere) goes into the events a call records.
    """

    app = "auth"
    __slots__ = ()

    async def register(self, email: str, password: str, *, request_id: str | None = None) -> Registered:
        return await self._call(AuthOperations.register, email, password, request_id=request_id)

    async def login(
        self, email: str, password: str, *, client: str | None = None, request_id: str | None = None
    ) -> TokenPair:
        """``client`` is the caller's address, which failed logins are counted against besides the email."""
        return await self._call(AuthOperations.login, email, password, client=client, request_id=request_id)

    async def refresh(self, refresh_token: str, *, request_id: str | None = None) -> TokenPair:
        return await self._call(AuthOperations.refresh, refresh_token, request_id=request_id)

    async def logout(self, refresh_token: str, *, request_id: str | None = None) -> RevokedSessions:
        return await self._call(AuthOperations.logout, refresh_token, request_id=request_id)

    async def logout_all(self, user_id: str, *, request_id: str | None = None) -> RevokedSessions:
        return await self._call(AuthOperations.logout_all, user_id, request_id=request_id)

    async def change_password(
        self, user_id: str, current_password: str, new_password: str, *, request_id: str | None = None
    ) -> PasswordChanged:
        return await self._call(
            AuthOperations.change_password, user_id, current_password, new_password, request_id=request_id
        )

    async def jwks(self) -> Jwks:
        return await self._call(AuthOperations.jwks)

    async def rotate_keys(self) -> KeyRotation:
        """A new active signing key; this replica signs with it at once, the others within the key cache's TTL."""
        return await self._call(AuthOperations.rotate_keys)

    async def signing_keys(self) -> SigningKeys:
        """Every stored signing key without its material, newest first."""
        return await self._call(AuthOperations.signing_keys)

    async def ensure_account(self, email: str, password: str, *, existing: bool = False) -> EnsuredAccount:
        """The account of ``email``, made with ``password`` if there is none; an existing one is refused
        (``Conflict``, ``account-exists``) unless ``existing``, then given ``password`` with its sessions ended
        (an operator's call)."""
        return await self._call(AuthOperations.ensure_account, email, password, existing=existing)


def _offers(client: AuthClient) -> AuthOperations:
    """Never called: mypy checks here that the client offers every call of the Protocol, with its signature."""
    return client
