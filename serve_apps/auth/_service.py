"""The auth service's use cases: register, log in, refresh, log out, change password, publish and rotate keys.

:class:`Authenticator` orchestrates them over a :class:`~strata.actors.postgres.Database`
(plain async Python, no Serve): CPU-bound hashing runs in threads, each
database step is one short unit of work (the module-level functions below,
importable for the pool-actor backend), and every state change records its
event in the same transaction.

Every time the service decides with (throttle waits and locks, session expiry)
or writes (used, revoked, changed) is read from the Authenticator's ``clock``
and handed to the units of work as ``now``, the parameter after the connection;
no unit of work asks PostgreSQL for ``now()``. So the replica's clock is the one
that counts, and tests drive the service with a clock they move by hand.

Errors a client caused are :class:`~strata.schemas.DomainError` subclasses::

    register         Unprocessable (invalid email, password policy; ``code`` names the rule), Conflict (email taken)
    login            InvalidCredentials (wrong password, unknown email, disabled account: one answer),
                     TooManyRequests (``retry_after``: backing off or locked)
    refresh          InvalidToken (unknown, used, revoked or expired token, disabled account: one answer)
    change_password  InvalidCredentials (wrong current password), TooManyRequests, Unprocessable (policy),
                     ResourceNotFound (no such account), Forbidden (disabled account)
    logout_all       ResourceNotFound (no such account)
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg

from strata.actors.postgres import Database, UniqueViolation
from strata.schemas import (
    REFRESH_CHILD,
    SIGNING_KEY_ENCRYPTION,
    Conflict,
    EnsuredAccount,
    Forbidden,
    InvalidCredentials,
    InvalidToken,
    Jwks,
    KeyRotation,
    PasswordChanged,
    Registered,
    ResourceNotFound,
    RevokedSessions,
    Settings,
    SigningKeyInfo,
    SigningKeys,
    TokenPair,
    TooManyRequests,
    Unprocessable,
)
from strata.schemas.events import (
    ACCOUNT_LOGGED_IN,
    ACCOUNT_LOGIN_FAILED,
    ACCOUNT_PASSWORD_CHANGED,
    ACCOUNT_REGISTERED,
    AccountLoggedIn,
    AccountLoginFailed,
    AccountPasswordChanged,
    AccountRegistered,
)
from strata.serve_apps.auth import _keys, _refresh, _throttle
from strata.serve_apps.auth._events import record_account_event
from strata.serve_apps.auth._keys import ActiveKeyCache
from strata.serve_apps.auth._passwords import (
    MAX_PASSWORD_LENGTH,
    PasswordHasher,
    check_email,
    check_password_policy,
    normalize_email,
)
from strata.serve_apps.auth._refresh import Limited, RefreshRates, Refused, Session
from strata.serve_apps.auth._throttle import Scope, ThrottlePolicy, retry_after_header, subjects_for
from strata.serve_apps.auth._tokens import (
    child_refresh_token,
    hash_refresh_token,
    issue_access_token,
    new_refresh_token,
)

logger = logging.getLogger(__name__)

INVALID_CREDENTIALS = "wrong email or password"
INVALID_REFRESH_TOKEN = "the refresh token is invalid, expired or revoked"
TOO_MANY_FAILURES = "too many failed attempts; try again later"
SYSTEM_ACTOR = "system"
"""Actor of the changes an operator makes through the ``strata`` command."""
UNKNOWN_ACCOUNT_KEY = "unknown"
"""Event key (and subject id) of a failed login whose email belongs to no account."""


# --- units of work --------------------------------------------------------------------------------------------


async def create_account(
    conn: asyncpg.Connection, email: str, password_hash: str, request_id: str | None = None
) -> dict[str, Any]:
    """Insert an account; records ``registered``. A taken email raises :class:`UniqueViolation`."""
    user_id = str(uuid.uuid4())
    await conn.execute(
        "INSERT INTO auth.accounts (user_id, email, password_hash) VALUES ($1, $2, $3)", user_id, email, password_hash
    )
    await record_account_event(
        conn,
        ACCOUNT_REGISTERED,
        AccountRegistered(user_id=user_id, email=email),
        key=user_id,
        request_id=request_id,
        actor=user_id,
    )
    return {"user_id": user_id, "email": email}


async def admit_login(
    conn: asyncpg.Connection,
    now: datetime,
    policy: ThrottlePolicy,
    email: str,
    client: str | None,
    request_id: str | None = None,
) -> tuple[float, dict[str, Any] | None]:
    """Charge a login attempt to the throttle and read the account; ``(wait, account)``.

    ``wait > 0``: refused without checking the password; records
    ``login_failed`` (reason ``locked``). ``account`` is ``None`` for an
    unknown email.
    """
    wait = await _throttle.charge_attempt(conn, now, policy, subjects_for(email, client))
    row = await conn.fetchrow(
        "SELECT user_id::text AS user_id, password_hash, disabled FROM auth.accounts WHERE email = $1", email
    )
    account = None if row is None else dict(row)
    if wait > 0:
        await _record_login_failed(conn, None if account is None else account["user_id"], "locked", request_id)
    return wait, account


async def record_login_failure(conn: asyncpg.Connection, user_id: str | None, request_id: str | None = None) -> None:
    """Record ``login_failed`` (reason ``invalid_credentials``); the attempt was charged when admitted."""
    await _record_login_failed(conn, user_id, "invalid_credentials", request_id)


async def _record_login_failed(
    conn: asyncpg.Connection,
    user_id: str | None,
    reason: Literal["invalid_credentials", "locked"],
    request_id: str | None,
) -> None:
    key = user_id or UNKNOWN_ACCOUNT_KEY
    await record_account_event(
        conn,
        ACCOUNT_LOGIN_FAILED,
        AccountLoginFailed(user_id=user_id, reason=reason),
        key=key,
        request_id=request_id,
        actor=user_id,
    )


async def complete_login(
    conn: asyncpg.Connection,
    now: datetime,
    policy: ThrottlePolicy,
    subjects: list[tuple[Scope, str]],
    user_id: str,
    old_hash: str,
    new_hash: str | None,
    refresh_hash: bytes,
    refresh_ttl_s: int,
    request_id: str | None = None,
) -> Session | None:
    """After a verified password: settle the throttle, upgrade the hash, start a session; ``None`` if disabled.

    Records ``logged_in``. The hash is replaced only if it is still the one
    verified, so a concurrent password change is never overwritten.
    """
    account = await conn.fetchrow(
        "SELECT roles, perm_version, disabled FROM auth.accounts WHERE user_id = $1 FOR UPDATE", user_id
    )
    if account is None or account["disabled"]:
        return None
    await _throttle.settle_success(conn, policy, subjects)
    if new_hash is not None:
        await conn.execute(
            "UPDATE auth.accounts SET password_hash = $3 WHERE user_id = $1 AND password_hash = $2",
            user_id,
            old_hash,
            new_hash,
        )
    family_id, expires_at = await _refresh.start_family(conn, now, user_id, refresh_hash, refresh_ttl_s)
    await record_account_event(
        conn,
        ACCOUNT_LOGGED_IN,
        AccountLoggedIn(user_id=user_id, session_id=family_id),
        key=user_id,
        request_id=request_id,
        actor=user_id,
    )
    return Session(user_id, family_id, expires_at, tuple(account["roles"]), int(account["perm_version"]))


async def read_account(conn: asyncpg.Connection, user_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT user_id::text AS user_id, email, password_hash, disabled FROM auth.accounts WHERE user_id = $1",
        user_id,
    )
    return None if row is None else dict(row)


async def read_account_by_email(conn: asyncpg.Connection, email: str) -> dict[str, Any] | None:
    """``{"user_id", "email", "disabled"}`` of the account with ``email`` (normalized), or ``None``."""
    row = await conn.fetchrow(
        "SELECT user_id::text AS user_id, email, disabled FROM auth.accounts WHERE email = $1", email
    )
    return None if row is None else dict(row)


async def replace_password(
    conn: asyncpg.Connection,
    now: datetime,
    policy: ThrottlePolicy,
    user_id: str,
    email: str,
    old_hash: str | None,
    new_hash: str,
    request_id: str | None = None,
) -> int | None:
    """Store ``new_hash`` if the hash is still ``old_hash``, revoke every session; return how many were live.

    ``None`` when the password changed meanwhile (the caller's check is void).
    Records ``password_changed`` and ``sessions_revoked`` (reason ``password_changed``).
    """
    status = await conn.execute(
        "UPDATE auth.accounts SET password_hash = $3, password_changed_at = $4"
        " WHERE user_id = $1 AND password_hash IS NOT DISTINCT FROM $2",
        user_id,
        old_hash,
        new_hash,
        now,
    )
    if status.split()[-1] == "0":
        return None
    return await _password_replaced(conn, now, policy, user_id, email, request_id, actor=user_id)


async def take_over_account(
    conn: asyncpg.Connection,
    now: datetime,
    policy: ThrottlePolicy,
    user_id: str,
    email: str,
    new_hash: str,
    request_id: str | None = None,
) -> int:
    """An operator takes an existing account over: set ``new_hash`` whatever the password was, end every session.

    Records ``password_changed`` and ``sessions_revoked`` (reason ``password_changed``), actor ``system``, as a
    password change does: the account's refresh tokens are refused at once and its access tokens at the edge as
    soon as the gateway reads the event. Returns how many sessions were live.
    """
    await conn.execute(
        "UPDATE auth.accounts SET password_hash = $2, password_changed_at = $3 WHERE user_id = $1",
        user_id,
        new_hash,
        now,
    )
    return await _password_replaced(conn, now, policy, user_id, email, request_id, actor=SYSTEM_ACTOR)


async def _password_replaced(
    conn: asyncpg.Connection,
    now: datetime,
    policy: ThrottlePolicy,
    user_id: str,
    email: str,
    request_id: str | None,
    *,
    actor: str,
) -> int:
    """What follows a new password (its owner's or an operator's): the account's failures forgiven,
    ``password_changed`` recorded, every session ended; how many were live."""
    await _throttle.settle_success(conn, policy, subjects_for(email, None))
    await record_account_event(
        conn,
        ACCOUNT_PASSWORD_CHANGED,
        AccountPasswordChanged(user_id=user_id),
        key=user_id,
        request_id=request_id,
        actor=actor,
    )
    return await _refresh.revoke_all(conn, now, user_id, "password_changed", request_id, actor=actor)


async def logout_everywhere(
    conn: asyncpg.Connection, now: datetime, user_id: str, request_id: str | None = None
) -> int | None:
    """Revoke every session of ``user_id`` at ``now``; ``None`` when there is no such account."""
    if await conn.fetchval("SELECT 1 FROM auth.accounts WHERE user_id = $1", user_id) is None:
        return None
    return await _refresh.revoke_all(conn, now, user_id, "logout_all", request_id)


async def housekeeping(
    conn: asyncpg.Connection, now: datetime, policy: ThrottlePolicy, refresh_grace_s: float
) -> dict[str, int]:
    """Delete login counts that no longer count at ``now`` and refresh tokens expired ``refresh_grace_s`` before."""
    return {
        "login_failures": await _throttle.prune_failures(conn, now, policy),
        "refresh_tokens": await _refresh.prune_expired(conn, now, refresh_grace_s),
    }


# --- orchestration --------------------------------------------------------------------------------------------


def _user_id(value: str) -> str | None:
    """``value`` as a canonical UUID string, or ``None`` when it is not one."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        return None


class Authenticator:
    """The auth service's use cases over its database; what :class:`AuthService` replicas delegate to.

    Answers are models of :mod:`strata.schemas` (they cross Ray calls, and are what
    :class:`~strata.serve_apps.auth.AuthClient` declares); client errors are
    :class:`~strata.schemas.DomainError` subclasses (see the module docstring).
    """

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``clock`` answers Unix seconds (``time.time`` unless a test moves time by hand); it times everything."""
        # Its own derived secrets only (SecretNotHeld, a ValueError, when this process was not given them).
        self._signing_key_key = settings.secret(SIGNING_KEY_ENCRYPTION)
        self._child_key = settings.secret(REFRESH_CHILD)
        self._refresh_rates = RefreshRates.from_settings(settings)
        self._db = db
        self._settings = settings
        self._hasher = hasher or PasswordHasher.from_settings(settings)
        self._policy = ThrottlePolicy.from_settings(settings)
        self._clock = clock
        self._keys = ActiveKeyCache(db, self._signing_key_key, settings.token_algorithm)

    async def start(self) -> str:
        """Make sure an active signing key of the configured algorithm exists; return its ``kid``."""
        return await self._keys.ensure_configured()

    # register ---------------------------------------------------------------------------------------------

    async def register(self, email: str, password: str, request_id: str | None = None) -> Registered:
        """A new account (its email normalized). Records ``registered``."""
        normalized = check_email(email)
        check_password_policy(password, normalized)
        password_hash = await self._hasher.hash_async(password)
        try:
            account = await self._db.run_in_transaction(create_account, normalized, password_hash, request_id)
        except UniqueViolation:
            raise Conflict("an account with this email already exists", code="email-taken") from None
        return Registered.model_validate(account)

    async def ensure_account(self, email: str, password: str, *, existing: bool = False) -> EnsuredAccount:
        """The account of ``email`` for an operator (``strata users create-admin``): a new one with ``password``, or,
        only with ``existing``, the account already registered, taken over.

        Anyone may register any email through the API first, with a password of their own: an existing account is
        refused (:class:`Conflict`, ``code`` ``account-exists``) unless the operator says ``existing``, and then it
        gets ``password`` and every session of it ends (:func:`take_over_account`), so whoever registered it can
        no longer log in, refresh, or use an access token from before. ``password`` meets the policy either way.
        An operator's call, made inside the cluster; the gateway routes no request to it.
        """
        normalized = check_email(email)
        check_password_policy(password, normalized)
        account = await self._db.run_in_transaction(read_account_by_email, normalized)
        if account is None:
            try:
                registered = await self.register(normalized, password)
            except Conflict:  # registered meanwhile: an existing account after all
                account = await self._db.run_in_transaction(read_account_by_email, normalized)
                if account is None:  # and deleted again at once
                    raise
            else:
                return EnsuredAccount(user_id=registered.user_id, email=registered.email, created=True)
        if not existing:
            raise Conflict(
                f"an account with the email {normalized} exists already, registered by whoever chose its password:"
                " pass --existing to make it an administrator with the password given now (its sessions end)",
                code="account-exists",
            )
        new_hash = await self._hasher.hash_async(password)
        revoked = await self._db.run_in_transaction(
            take_over_account, self._now(), self._policy, account["user_id"], normalized, new_hash
        )
        logger.warning(
            "account %s taken over by an operator: password replaced, %d session(s) ended", account["user_id"], revoked
        )
        return EnsuredAccount(
            user_id=account["user_id"], email=normalized, created=False, password_set=True, revoked_sessions=revoked
        )

    # login ------------------------------------------------------------------------------------------------

    async def login(
        self, email: str, password: str, client: str | None = None, request_id: str | None = None
    ) -> TokenPair:
        """A token pair for a correct email and password.

        A wrong password, an unknown email and a disabled account all answer
        :class:`InvalidCredentials` with one detail, after one argon2
        verification each, and all count as failures of the email and of the
        client; too many recent failures answer :class:`TooManyRequests`
        before any password is checked.
        """
        normalized = normalize_email(email)
        subjects = subjects_for(normalized, client)
        wait, account = await self._db.run_in_transaction(
            admit_login, self._now(), self._policy, normalized, client, request_id
        )
        if wait > 0:
            raise TooManyRequests(TOO_MANY_FAILURES, retry_after=retry_after_header(wait))
        stored_hash = None if account is None else account["password_hash"]
        if len(password) > MAX_PASSWORD_LENGTH:  # no policy let it in: refuse without paying for a long hash
            ok, new_hash = await self._hasher.verify_and_update_async("", None)
        else:
            ok, new_hash = await self._hasher.verify_and_update_async(password, stored_hash)
        session: Session | None = None
        token = new_refresh_token()
        if ok and account is not None and not account["disabled"]:
            session = await self._db.run_in_transaction(
                complete_login,
                self._now(),
                self._policy,
                subjects,
                account["user_id"],
                stored_hash,
                new_hash,
                hash_refresh_token(token),
                self._settings.refresh_token_ttl_s,
                request_id,
            )
        if session is None:
            user_id = None if account is None else account["user_id"]
            await self._db.run_in_transaction(record_login_failure, user_id, request_id)
            raise InvalidCredentials(INVALID_CREDENTIALS)
        if new_hash is not None:
            logger.info("password hash of account %s upgraded to the current argon2 parameters", session.user_id)
        return await self._token_pair(session, token)

    # refresh, logout --------------------------------------------------------------------------------------

    async def refresh(self, refresh_token: str, request_id: str | None = None) -> TokenPair:
        """A new token pair for the family's newest refresh token; roles and ``pv`` are read afresh.

        Presenting a token already rotated revokes its whole family (committed)
        and answers :class:`InvalidToken`, like any other refusal; except the
        family's previous token within ``refresh_reuse_grace_s`` of its rotation,
        which answers the same child again (a retry after a lost answer).
        """
        new_token = child_refresh_token(self._child_key, refresh_token)
        result = await self._db.run_in_transaction(
            _refresh.rotate_refresh_token,
            self._now(),
            hash_refresh_token(refresh_token),
            hash_refresh_token(new_token),
            request_id,
            grace_s=self._settings.refresh_reuse_grace_s,
            rates=self._refresh_rates,
        )
        if isinstance(result, Limited):
            raise TooManyRequests(
                f"this {'session' if result.scope == 'family' else 'account'} refreshed too often"
                f" ({result.policy}); the refresh token stays valid: try it again later",
                retry_after=retry_after_header(result.retry_after_s),
                limit_class=f"refresh-{result.scope}",
            )
        if isinstance(result, Session) and result.replayed:
            logger.info(
                "refresh retried within the grace window: session %s answered its child again", result.family_id
            )
        if isinstance(result, Refused):
            if result.reason == "reused":
                logger.warning(
                    "refresh token reused: session %s of account %s revoked", result.family_id, result.user_id
                )
            raise InvalidToken(INVALID_REFRESH_TOKEN, error="invalid_token")
        return await self._token_pair(result, new_token)

    async def logout(self, refresh_token: str, request_id: str | None = None) -> RevokedSessions:
        """End the session of ``refresh_token``: 1 revoked, or 0 (an unknown token, or a session ended already)."""
        revoked = await self._db.run_in_transaction(
            _refresh.revoke_family, self._now(), hash_refresh_token(refresh_token), request_id
        )
        return RevokedSessions(revoked_sessions=revoked)

    async def logout_all(self, user_id: str, request_id: str | None = None) -> RevokedSessions:
        """End every session of ``user_id``; how many were live. Records ``sessions_revoked``."""
        canonical = _user_id(user_id)
        revoked = (
            None
            if canonical is None
            else await self._db.run_in_transaction(logout_everywhere, self._now(), canonical, request_id)
        )
        if revoked is None:
            raise ResourceNotFound("no such account")
        return RevokedSessions(revoked_sessions=revoked)

    # change password --------------------------------------------------------------------------------------

    async def change_password(
        self, user_id: str, current_password: str, new_password: str, request_id: str | None = None
    ) -> PasswordChanged:
        """Replace the password after checking the current one; every session is revoked.

        Answers how many sessions were live; the client logs in again.
        Wrong current passwords count as failures of the account, like logins.
        """
        canonical = _user_id(user_id)
        account = None if canonical is None else await self._db.run_in_transaction(read_account, canonical)
        if account is None:
            raise ResourceNotFound("no such account")
        if account["disabled"]:
            raise Forbidden("this account is disabled")
        # The new password's checks need nothing stored: done first, they never cost a charged attempt.
        if new_password == current_password:
            raise Unprocessable("the new password must differ from the current one", code="password-unchanged")
        check_password_policy(new_password, account["email"])
        subjects = subjects_for(account["email"], None)
        wait = await self._db.run_in_transaction(_throttle.charge_attempt, self._now(), self._policy, subjects)
        if wait > 0:
            raise TooManyRequests(TOO_MANY_FAILURES, retry_after=retry_after_header(wait))
        if len(current_password) > MAX_PASSWORD_LENGTH:
            ok, _ = await self._hasher.verify_and_update_async("", None)
        else:
            ok, _ = await self._hasher.verify_and_update_async(current_password, account["password_hash"])
        if not ok:
            raise InvalidCredentials("the current password is wrong")
        new_hash = await self._hasher.hash_async(new_password)
        revoked = await self._db.run_in_transaction(
            replace_password,
            self._now(),
            self._policy,
            account["user_id"],
            account["email"],
            account["password_hash"],
            new_hash,
            request_id,
        )
        if revoked is None:
            raise InvalidCredentials("the current password is wrong")  # changed meanwhile by another request
        return PasswordChanged(user_id=account["user_id"], revoked_sessions=revoked)

    # keys ---------------------------------------------------------------------------------------------------

    async def jwks(self) -> Jwks:
        """The JWKS document: the active key, then every retired key whose tokens may still be live (see
        :func:`~strata.serve_apps.auth._keys.jwks`); public members only."""
        window = _keys.KEY_CACHE_TTL_S + self._settings.access_token_ttl_s + self._settings.token_leeway_s
        return Jwks.model_validate(await self._db.run_in_transaction(_keys.jwks, retired_within_s=window))

    async def signing_keys(self) -> SigningKeys:
        """Every stored signing key without its material, newest first."""
        rows = await self._db.run_in_transaction(_keys.key_inventory)
        return SigningKeys(keys=[SigningKeyInfo.model_validate(row) for row in rows])

    async def rotate_keys(self) -> KeyRotation:
        """Make a new active signing key; the one it replaced stays in the JWKS.

        This replica signs with it at once; the others within
        :data:`~strata.serve_apps.auth._keys.KEY_CACHE_TTL_S` seconds.
        """
        previous = await self._db.run_in_transaction(_keys.active_key_record)
        candidate = await asyncio.to_thread(
            _keys.new_signing_key, self._signing_key_key, self._settings.token_algorithm
        )
        kid = await self._db.run_in_transaction(_keys.install_key, candidate)
        self._keys.invalidate()
        logger.info("signing key rotated: %s is active", kid)
        return KeyRotation(kid=kid, previous_kid=None if previous is None else previous["kid"])

    async def housekeeping(self) -> dict[str, int]:
        """Prune stale login counts and long-expired refresh tokens."""
        return await self._db.run_in_transaction(
            housekeeping, self._now(), self._policy, float(self._settings.refresh_token_ttl_s)
        )

    # helpers ------------------------------------------------------------------------------------------------

    def _now(self) -> datetime:
        """The clock's time for one unit of work: read afresh, so a step after a slow hash is timed when it runs."""
        return datetime.fromtimestamp(self._clock(), UTC)

    async def _token_pair(self, session: Session, refresh_token: str) -> TokenPair:
        key = await self._keys.get()
        now = self._clock()
        access_token = issue_access_token(
            key.kid,
            key.algorithm,
            key.private_key,
            sub=session.user_id,
            roles=session.roles,
            perm_version=session.perm_version,
            session_id=session.family_id,
            settings=self._settings,
            now=now,
        )
        remaining = (session.expires_at - datetime.fromtimestamp(now, UTC)).total_seconds()
        return TokenPair(
            access_token=access_token,
            token_type="Bearer",
            expires_in=self._settings.access_token_ttl_s,
            refresh_token=refresh_token,
            refresh_expires_in=max(0, int(remaining)),
        )
