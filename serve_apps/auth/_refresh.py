"""Refresh-token families: one per session, rotated on every refresh, revoked whole on reuse.

A login starts a family (its id is the session id, the ``sid`` claim). A
refresh presents the family's newest token: it is marked used and a child
joins the family, with the same absolute expiry (a session lasts at most
``refresh_token_ttl_s`` from its login, however often it refreshes).
Presenting a token that was already used means two parties hold it, one of
them an attacker: the whole family is revoked, the newest token included.

Every function is a unit of work over a connection inside a transaction
(``Database.run_in_transaction``); plaintext tokens never reach them, only
their hashes (:func:`~strata.serve_apps.auth._tokens.hash_refresh_token`).
:func:`rotate_refresh_token` answers a refusal as a value rather than an
exception, so a revocation it decided commits before the caller raises.

Time is the caller's: each unit of work takes ``now`` (an auth replica's clock,
or the auth consumer's) for every expiry it decides and every timestamp it
writes, never PostgreSQL's ``now()``, so a test can move it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import asyncpg

from strata.schemas.events import SESSIONS_REVOKED, SessionsRevoked
from strata.serve_apps.auth._events import record_account_event

RevocationReason = Literal["logout", "logout_all", "refresh_token_reuse", "password_changed", "disabled", "deleted"]
RefusalReason = Literal["unknown", "revoked", "reused", "expired", "disabled"]


@dataclass(frozen=True, slots=True)
class Session:
    """A refresh token just issued, and what an access token for it needs."""

    user_id: str
    family_id: str
    expires_at: datetime
    roles: tuple[str, ...]
    perm_version: int


@dataclass(frozen=True, slots=True)
class Refused:
    """A refresh token that does not refresh; ``reason`` is for logs, never for the client."""

    reason: RefusalReason
    user_id: str | None = None
    family_id: str | None = None


async def start_family(
    conn: asyncpg.Connection, now: datetime, user_id: str, token_hash: bytes, ttl_s: int
) -> tuple[str, datetime]:
    """Store the first token of a new family for ``user_id``, made at ``now``; return the family id and its expiry."""
    family_id = str(uuid.uuid4())
    expires_at = await conn.fetchval(
        "INSERT INTO auth.refresh_tokens (token_hash, family_id, user_id, created_at, expires_at)"
        " VALUES ($1, $2, $3, $4, $5) RETURNING expires_at",
        token_hash,
        family_id,
        user_id,
        now,
        now + timedelta(seconds=ttl_s),
    )
    return family_id, expires_at


async def rotate_refresh_token(
    conn: asyncpg.Connection, now: datetime, presented_hash: bytes, new_hash: bytes, request_id: str | None = None
) -> Session | Refused:
    """Exchange a family's newest token for its child at ``now``, or refuse.

    Valid means: known, not used, not revoked, not expired at ``now``, and its account not
    disabled. A used token revokes its whole family and records
    ``strata.auth.account.sessions_revoked.v1`` (reason ``refresh_token_reuse``);
    the transaction then commits, and the caller raises. The row is locked, so
    two concurrent refreshes with one token are a reuse, not two sessions.
    """
    row = await conn.fetchrow(
        "SELECT t.family_id::text AS family_id, t.user_id::text AS user_id, t.expires_at, t.used_at, t.revoked_at,"
        " t.expires_at <= $2 AS expired, a.disabled, a.roles, a.perm_version"
        " FROM auth.refresh_tokens t JOIN auth.accounts a USING (user_id)"
        " WHERE t.token_hash = $1 FOR UPDATE OF t",
        presented_hash,
        now,
    )
    if row is None:
        return Refused("unknown")
    user_id, family_id = row["user_id"], row["family_id"]
    if row["revoked_at"] is not None:
        return Refused("revoked", user_id, family_id)
    if row["used_at"] is not None:
        await _revoke_families(conn, now, user_id, [family_id], "refresh_token_reuse", request_id, actor="system")
        return Refused("reused", user_id, family_id)
    if row["expired"]:
        return Refused("expired", user_id, family_id)
    if row["disabled"]:
        return Refused("disabled", user_id, family_id)
    await conn.execute("UPDATE auth.refresh_tokens SET used_at = $2 WHERE token_hash = $1", presented_hash, now)
    await conn.execute(
        "INSERT INTO auth.refresh_tokens (token_hash, family_id, user_id, parent_hash, created_at, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        new_hash,
        family_id,
        user_id,
        presented_hash,
        now,
        row["expires_at"],
    )
    return Session(user_id, family_id, row["expires_at"], tuple(row["roles"]), int(row["perm_version"]))


async def revoke_family(
    conn: asyncpg.Connection, now: datetime, token_hash: bytes, request_id: str | None = None
) -> int:
    """Revoke the family of the token with ``token_hash`` at ``now`` (logout); return 1, or 0 for an unknown token.

    Any token of the family will do, used or expired: logging out is allowed
    with whatever the client still has. Records ``sessions_revoked`` (reason
    ``logout``) when the family was still live.
    """
    row = await conn.fetchrow(
        "SELECT family_id::text AS family_id, user_id::text AS user_id FROM auth.refresh_tokens WHERE token_hash = $1",
        token_hash,
    )
    if row is None:
        return 0
    return await _revoke_families(conn, now, row["user_id"], [row["family_id"]], "logout", request_id)


async def revoke_all(
    conn: asyncpg.Connection,
    now: datetime,
    user_id: str,
    reason: RevocationReason = "logout_all",
    request_id: str | None = None,
    *,
    always_record: bool = True,
    actor: str | None = None,
) -> int:
    """Revoke every family of ``user_id`` at ``now``; return how many were live. Records one ``sessions_revoked``.

    The event is recorded even when no family was live (``always_record``):
    access tokens outlive their session by up to their TTL, and the gateway
    cuts them off on this event. Its ``actor`` is ``user_id`` unless given
    (an administrator who disabled or deleted the user).
    """
    families = [
        r["family_id"]
        for r in await conn.fetch(
            "SELECT DISTINCT family_id::text AS family_id FROM auth.refresh_tokens"
            " WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2",
            user_id,
            now,
        )
    ]
    # Expired families are closed too (harmless), but only live ones are counted.
    await conn.execute(
        "UPDATE auth.refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL", user_id, now
    )
    if families or always_record:
        await record_account_event(
            conn,
            SESSIONS_REVOKED,
            SessionsRevoked(user_id=user_id, reason=reason),
            key=user_id,
            request_id=request_id,
            actor=actor or user_id,
        )
    return len(families)


async def _revoke_families(
    conn: asyncpg.Connection,
    now: datetime,
    user_id: str,
    family_ids: list[str],
    reason: RevocationReason,
    request_id: str | None,
    *,
    actor: str | None = None,
) -> int:
    revoked = 0
    for family_id in family_ids:
        status = await conn.execute(
            "UPDATE auth.refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
            family_id,
            now,
        )
        if status.split()[-1] == "0":
            continue  # revoked before: nothing new to tell
        revoked += 1
        await record_account_event(
            conn,
            SESSIONS_REVOKED,
            SessionsRevoked(user_id=user_id, reason=reason, family_id=family_id),
            key=user_id,
            request_id=request_id,
            actor=actor or user_id,
        )
    return revoked


async def prune_expired(conn: asyncpg.Connection, now: datetime, older_than_s: float) -> int:
    """Delete refresh tokens expired more than ``older_than_s`` before ``now``; return how many."""
    status = await conn.execute(
        "DELETE FROM auth.refresh_tokens WHERE expires_at < $1", now - timedelta(seconds=older_than_s)
    )
    return int(status.split()[-1])
