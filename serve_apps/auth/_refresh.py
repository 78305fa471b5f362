"""Refresh-token families: one per session, rotated on every refresh, revoked whole on reuse.

A login starts a family (its id is the session id, the ``sid`` claim). A
refresh presents the family's newest token: it is marked used and a child
joins the family, with the same absolute expiry (a session lasts at most
``refresh_token_ttl_s`` from its login, however often it refreshes).
Presenting a token that was already used means two parties hold it, one of
them an attacker: the whole family is revoked, the newest token included.

Except within the grace window (``refresh_reuse_grace_s``): a client whose
refresh response was lost retries with the same token, and that is not a leak.
The immediate parent of the family's newest token, presented again within the
window after it was used, answers that same child again, as long as the child
has not been used itself, the family is not revoked or expired and the account
not disabled. The child's token is derived from its parent's
(:func:`~strata.serve_apps.auth._tokens.child_refresh_token`, an HMAC under a
key from the master secret), so the same child is answered without storing any
token: its hash is the one already stored. Reuse of any other token, or of
the parent after the window, revokes the family as before.

Rotation against revocation: every family has a row in ``auth.refresh_families``.
A rotation locks it first (``FOR UPDATE``) and checks its ``revoked_at``; a
revocation updates it first, so it waits for a rotation in flight, and its next
statement (READ COMMITTED: a new snapshot) sees and revokes the child that
rotation inserted. Revoking every family of an account also locks the account
row first (``FOR NO KEY UPDATE``), which a login's ``FOR UPDATE`` waits for;
a rotation takes no account lock but the ``FOR KEY SHARE`` of its child's
foreign key, which that mode lets through. Lock order: account, family, token.

Every function is a unit of work over a connection inside a transaction
(``Database.run_in_transaction``); plaintext tokens never reach them, only
their hashes (:func:`~strata.serve_apps.auth._tokens.hash_refresh_token`).
:func:`rotate_refresh_token` answers a refusal as a value rather than an
exception, so a revocation it decided commits before the caller raises.

Rate: a rotation (and a retry answered within the grace window) spends one token of the family's bucket and one of
its account's (:class:`RefreshRates`, the ``refresh_rate_per_*`` settings), under the family's lock and only once the
token is known to be good, so an empty bucket answers :class:`Limited` (429) and leaves the token valid. The limits
follow the session and the account, not the client's address: people behind one address never share an allowance,
and an address's failed logins never block its refreshes. The account's bucket has a row of its own
(``auth.refresh_account_rates``), locked after the family, never the account row. Lock order: account, family,
account rate, token.

Time is the caller's: each unit of work takes ``now`` (an auth replica's clock,
or the auth consumer's) for every expiry it decides and every timestamp it
writes, never PostgreSQL's ``now()``, so a test can move it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

import asyncpg

from strata.actors.ratelimit import RatePolicy, TokenBucket
from strata.schemas import Settings
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
    replayed: bool = False
    """The same child answered again to a retry within the grace window (no new token)."""


@dataclass(frozen=True, slots=True)
class Refused:
    """A refresh token that does not refresh; ``reason`` is for logs, never for the client."""

    reason: RefusalReason
    user_id: str | None = None
    family_id: str | None = None


@dataclass(frozen=True, slots=True)
class Limited:
    """A good refresh token refused for now: its session (``family``) or its account refreshed its allowance."""

    scope: Literal["family", "account"]
    retry_after_s: float
    policy: RatePolicy


@dataclass(frozen=True, slots=True)
class RefreshRates:
    """How often one family and one account may refresh (``refresh_rate_per_family``, ``refresh_rate_per_account``)."""

    family: RatePolicy
    account: RatePolicy

    @classmethod
    def from_settings(cls, settings: Settings) -> RefreshRates:
        return cls(RatePolicy(*settings.refresh_rate("family")), RatePolicy(*settings.refresh_rate("account")))


@dataclass(frozen=True, slots=True)
class Spend:
    """One token taken from a stored bucket, or not: what to store back, or how long until one is there."""

    allowed: bool
    tokens_left: float
    refilled_at: datetime
    retry_after_s: float


def spend_one(policy: RatePolicy, tokens_left: float | None, refilled_at: datetime | None, now: datetime) -> Spend:
    """Take one token from a bucket stored as ``(tokens_left, refilled_at)`` (``None``: never spent, full) at ``now``.

    A clock behind the stored time (another replica's) refills nothing and keeps the later time."""
    bucket = TokenBucket(policy, now.timestamp())
    if tokens_left is not None and refilled_at is not None:
        bucket.tokens, bucket.updated = tokens_left, refilled_at.timestamp()
    taken = bucket.take(policy, 1, now.timestamp())
    stamp = max(now, refilled_at) if refilled_at is not None else now
    return Spend(bool(taken), bucket.tokens, stamp, 0.0 if taken else bucket.seconds_until(policy, 1.0))


async def _spend_refresh(
    conn: asyncpg.Connection, now: datetime, family_id: str, family: asyncpg.Record, rates: RefreshRates
) -> Limited | None:
    """Spend a refresh of ``family_id`` (locked by the caller) and of its account; nothing is spent when either is
    empty, which answers :class:`Limited`."""
    on_family = spend_one(rates.family, family["refresh_tokens_left"], family["refresh_refilled_at"], now)
    if not on_family.allowed:
        return Limited("family", on_family.retry_after_s, rates.family)
    user_id = family["user_id"]
    await conn.execute(
        "INSERT INTO auth.refresh_account_rates (user_id, tokens_left, refilled_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (user_id) DO NOTHING",
        user_id,
        float(rates.account.quota),
        now,
    )
    account = await conn.fetchrow(
        "SELECT tokens_left, refilled_at FROM auth.refresh_account_rates WHERE user_id = $1 FOR UPDATE", user_id
    )
    on_account = spend_one(rates.account, account["tokens_left"], account["refilled_at"], now)
    if not on_account.allowed:
        return Limited("account", on_account.retry_after_s, rates.account)
    await conn.execute(
        "UPDATE auth.refresh_families SET refresh_tokens_left = $2, refresh_refilled_at = $3 WHERE family_id = $1",
        family_id,
        on_family.tokens_left,
        on_family.refilled_at,
    )
    await conn.execute(
        "UPDATE auth.refresh_account_rates SET tokens_left = $2, refilled_at = $3 WHERE user_id = $1",
        user_id,
        on_account.tokens_left,
        on_account.refilled_at,
    )
    return None


async def start_family(
    conn: asyncpg.Connection, now: datetime, user_id: str, token_hash: bytes, ttl_s: int
) -> tuple[str, datetime]:
    """Store a new family for ``user_id`` and its first token, made at ``now``; return the family id and its expiry."""
    family_id = str(uuid.uuid4())
    expires_at = await conn.fetchval(
        "INSERT INTO auth.refresh_families (family_id, user_id, created_at, expires_at)"
        " VALUES ($1, $2, $3, $4) RETURNING expires_at",
        family_id,
        user_id,
        now,
        now + timedelta(seconds=ttl_s),
    )
    await conn.execute(
        "INSERT INTO auth.refresh_tokens (token_hash, family_id, user_id, created_at, expires_at)"
        " VALUES ($1, $2, $3, $4, $5)",
        token_hash,
        family_id,
        user_id,
        now,
        expires_at,
    )
    return family_id, expires_at


async def rotate_refresh_token(
    conn: asyncpg.Connection,
    now: datetime,
    presented_hash: bytes,
    new_hash: bytes,
    request_id: str | None = None,
    *,
    grace_s: float = 0.0,
    rates: RefreshRates | None = None,
) -> Session | Refused | Limited:
    """Exchange a family's newest token for its child at ``now``, or refuse.

    Valid means: known, not used, not revoked (itself or its family), not
    expired at ``now``, and its account not disabled. ``new_hash`` is the hash
    of the child's token, derived from the presented one, so a retry within
    ``grace_s`` seconds of the first use finds that same child (see the module
    docstring) and answers it with ``replayed`` set. Any other used token
    revokes its whole family and records ``strata.auth.account.sessions_revoked.v1``
    (reason ``refresh_token_reuse``); the transaction then commits, and the
    caller raises. The family row is locked first, so rotations of one family
    run one after the other and none slips past a revocation. With ``rates``,
    a good token whose family or account has no refresh left is
    :class:`Limited` and stays as it was.
    """
    family_id = await conn.fetchval(
        "SELECT family_id::text FROM auth.refresh_tokens WHERE token_hash = $1", presented_hash
    )
    if family_id is None:
        return Refused("unknown")
    family = await conn.fetchrow(
        "SELECT f.user_id::text AS user_id, f.expires_at, f.revoked_at, f.expires_at <= $2 AS expired,"
        " a.disabled, a.roles, a.perm_version, f.refresh_tokens_left, f.refresh_refilled_at"
        " FROM auth.refresh_families f JOIN auth.accounts a USING (user_id)"
        " WHERE f.family_id = $1 FOR UPDATE OF f",
        family_id,
        now,
    )
    # Read after the family lock: a new snapshot, so whatever a revocation or rotation before it committed is seen.
    token = await conn.fetchrow(
        "SELECT used_at, revoked_at FROM auth.refresh_tokens WHERE token_hash = $1 FOR UPDATE", presented_hash
    )
    if family is None or token is None:
        return Refused("unknown")  # the account was deleted meanwhile
    user_id = family["user_id"]
    if family["revoked_at"] is not None or token["revoked_at"] is not None:
        return Refused("revoked", user_id, family_id)
    session = Session(user_id, family_id, family["expires_at"], tuple(family["roles"]), int(family["perm_version"]))
    if token["used_at"] is not None:
        if await _within_grace(conn, now, presented_hash, new_hash, token["used_at"], grace_s, family):
            limited = None if rates is None else await _spend_refresh(conn, now, family_id, family, rates)
            return limited or replace(session, replayed=True)
        await _revoke_families(conn, now, user_id, [family_id], "refresh_token_reuse", request_id, actor="system")
        return Refused("reused", user_id, family_id)
    if family["expired"]:
        return Refused("expired", user_id, family_id)
    if family["disabled"]:
        return Refused("disabled", user_id, family_id)
    if rates is not None and (limited := await _spend_refresh(conn, now, family_id, family, rates)) is not None:
        return limited
    await conn.execute("UPDATE auth.refresh_tokens SET used_at = $2 WHERE token_hash = $1", presented_hash, now)
    await conn.execute(
        "INSERT INTO auth.refresh_tokens (token_hash, family_id, user_id, parent_hash, created_at, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        new_hash,
        family_id,
        user_id,
        presented_hash,
        now,
        family["expires_at"],
    )
    return session


async def _within_grace(
    conn: asyncpg.Connection,
    now: datetime,
    presented_hash: bytes,
    child_hash: bytes,
    used_at: datetime,
    grace_s: float,
    family: asyncpg.Record,
) -> bool:
    """Whether a used token presented again may have its child answered again: within ``grace_s`` of its use,
    the family live and unexpired, the account enabled, and its child (the one derived from it) never used."""
    if grace_s <= 0 or family["expired"] or family["disabled"]:
        return False
    if not timedelta(0) <= now - used_at <= timedelta(seconds=grace_s):
        return False
    child = await conn.fetchrow(
        "SELECT used_at, revoked_at FROM auth.refresh_tokens WHERE token_hash = $1 AND parent_hash = $2",
        child_hash,
        presented_hash,
    )
    return child is not None and child["used_at"] is None and child["revoked_at"] is None


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
    # The account row first (a login takes it to start a family), then every live family in one order (a rotation
    # in flight holds one): the updates after these locks see every family and child committed before them.
    # FOR NO KEY UPDATE, not FOR UPDATE: the child a rotation inserts takes FOR KEY SHARE on the account (its
    # foreign key) while holding its family's lock, which this waits for; FOR UPDATE would deadlock with it.
    await conn.execute("SELECT 1 FROM auth.accounts WHERE user_id = $1 FOR NO KEY UPDATE", user_id)
    live = await conn.fetch(
        "SELECT family_id, expires_at > $2 AS live FROM auth.refresh_families"
        " WHERE user_id = $1 AND revoked_at IS NULL ORDER BY family_id FOR UPDATE",
        user_id,
        now,
    )
    families = [row["family_id"] for row in live if row["live"]]
    # Expired families are closed too (harmless), but only live ones are counted.
    await conn.execute(
        "UPDATE auth.refresh_families SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL", user_id, now
    )
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
        # The family row first: it waits for a rotation in flight, whose child the next statement then sees.
        status = await conn.execute(
            "UPDATE auth.refresh_families SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
            family_id,
            now,
        )
        if status.split()[-1] == "0":
            continue  # revoked before: nothing new to tell
        await conn.execute(
            "UPDATE auth.refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
            family_id,
            now,
        )
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
    cutoff = now - timedelta(seconds=older_than_s)
    status = await conn.execute("DELETE FROM auth.refresh_tokens WHERE expires_at < $1", cutoff)
    await conn.execute("DELETE FROM auth.refresh_families WHERE expires_at < $1", cutoff)
    return int(status.split()[-1])
