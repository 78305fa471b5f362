"""The auth service's typed client: one method per call of :class:`~strata.serve_apps.auth.AuthService`."""

from __future__ import annotations

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
from strata.serve_apps._client import ServiceClient


class AuthClient(ServiceClient):
    """Calls the auth service one hop away; what each call answers and raises is documented on
    :class:`~strata.serve_apps.auth.Authenticator`, whose errors arrive here as the same
    :class:`~strata.schemas.DomainError` classes (status, slug, detail and ``retry_after`` kept).

    ``request_id`` (keyword-only everywhere) goes into the events a call records.
    """

    app = "auth"
    __slots__ = ()

    async def register(self, email: str, password: str, *, request_id: str | None = None) -> Registered:
        return await self._call(Registered, "register", email, password, request_id)

    async def login(
        self, email: str, password: str, *, client: str | None = None, request_id: str | None = None
    ) -> TokenPair:
        """``client`` is the caller's address, which failed logins are counted against besides the email."""
        return await self._call(TokenPair, "login", email, password, client, request_id)

    async def refresh(self, refresh_token: str, *, request_id: str | None = None) -> TokenPair:
        return await self._call(TokenPair, "refresh", refresh_token, request_id)

    async def logout(self, refresh_token: str, *, request_id: str | None = None) -> RevokedSessions:
        return await self._call(RevokedSessions, "logout", refresh_token, request_id)

    async def logout_all(self, user_id: str, *, request_id: str | None = None) -> RevokedSessions:
        return await self._call(RevokedSessions, "logout_all", user_id, request_id)

    async def change_password(
        self, user_id: str, current_password: str, new_password: str, *, request_id: str | None = None
    ) -> PasswordChanged:
        return await self._call(PasswordChanged, "change_password", user_id, current_password, new_password, request_id)

    async def jwks(self) -> Jwks:
        return await self._call(Jwks, "jwks")

    async def rotate_keys(self) -> KeyRotation:
        """A new active signing key; this replica signs with it at once, the others within the key cache's TTL."""
        return await self._call(KeyRotation, "rotate_keys")

    async def signing_keys(self) -> SigningKeys:
        """Every stored signing key without its material, newest first."""
        return await self._call(SigningKeys, "signing_keys")

    async def ensure_account(self, email: str, password: str, *, existing: bool = False) -> EnsuredAccount:
        """The account of ``email``, made with ``password`` if there is none; an existing one is refused
        (``Conflict``, ``account-exists``) unless ``existing``, then given ``password`` with its sessions ended
        (an operator's call)."""
        return await self._call(EnsuredAccount, "ensure_account", email, password, existing=existing)
