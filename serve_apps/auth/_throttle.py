"""Brute-force protection of logins: per account and per client address, backoff then a temporary lock.

Each scope (``account``: the email tried, whether or not an account has it;
``client``: the caller's address, an IPv6 one by its /64, see
:func:`~strata.schemas.client_key`) counts failed logins in ``auth.login_failures``.
With ``f`` failures, the last at ``t``::

    f <  free_failures                 no wait
    f >= free_failures                 next attempt from t + min(2 ** (f - free_failures), max_backoff) s
    f >= lock_after                    locked until t + lock_s
    t older than window_s              the count starts again

An attempt is *charged* as a failure before its password is checked, under a
row lock, and refunded when it succeeds: so parallel attempts cannot all slip
through before the first failure is written. An attempt that must wait is
refused without checking the password at all (:class:`TooManyRequests` with
``retry_after``).

Time is the caller's: every unit of work takes ``now`` (the auth replica's
clock, see :class:`~strata.serve_apps.auth._service.Authenticator`) and never
reads PostgreSQL's ``now()``, so one clock decides and a test can move it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import asyncpg

from strata.schemas import Settings, client_key

Scope = Literal["account", "client"]
MAX_SUBJECT_LENGTH = 320


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """The knobs of the throttle (from the ``login_*`` settings)."""

    free_failures: int = 3
    lock_after: int = 10
    lock_s: float = 900.0
    window_s: float = 900.0
    max_backoff_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ThrottlePolicy:
        return cls(
            free_failures=settings.login_free_failures,
            lock_after=settings.login_lock_after,
            lock_s=float(settings.login_lock_s),
            window_s=float(settings.login_failure_window_s),
        )

    def backoff_s(self, failures: int) -> float:
        """Seconds to wait after the last of ``failures`` failures (0 below ``free_failures``)."""
        if failures < self.free_failures:
            return 0.0
        exponent = failures - self.free_failures
        if exponent >= 32:  # 2**32 s is past any cap
            return self.max_backoff_s
        return float(min(2**exponent, self.max_backoff_s))


@dataclass(frozen=True, slots=True)
class FailureCount:
    """One row of ``login_failures``."""

    failures: int
    first_failure_at: datetime
    last_failure_at: datetime
    locked_until: datetime | None


def is_stale(count: FailureCount, now: datetime, policy: ThrottlePolicy) -> bool:
    """Whether ``count`` no longer counts: its last failure left the window and no lock holds."""
    locked = count.locked_until is not None and count.locked_until > now
    return not locked and (now - count.last_failure_at).total_seconds() > policy.window_s


def wait_before_attempt(count: FailureCount | None, now: datetime, policy: ThrottlePolicy) -> float:
    """Seconds before the next attempt is allowed (0: now)."""
    if count is None or is_stale(count, now, policy):
        return 0.0
    waits = [0.0]
    if count.locked_until is not None:
        waits.append((count.locked_until - now).total_seconds())
    backoff = policy.backoff_s(count.failures)
    if backoff:
        waits.append((count.last_failure_at - now).total_seconds() + backoff)
    return max(waits)


def after_failure(count: FailureCount | None, now: datetime, policy: ThrottlePolicy) -> FailureCount:
    """The count once one more failure at ``now`` is added (a stale count starts again)."""
    if count is None or count.failures == 0 or is_stale(count, now, policy):
        failures, first = 1, now
    else:
        failures, first = count.failures + 1, count.first_failure_at
    locked_until = count.locked_until if count is not None and count.failures else None
    if failures >= policy.lock_after:
        locked_until = now + timedelta(seconds=policy.lock_s)
    elif locked_until is not None and locked_until <= now:
        locked_until = None
    return FailureCount(failures, first, now, locked_until)


def retry_after_header(wait_s: float) -> float:
    """A wait as ``Retry-After`` gives it: whole seconds, at least 1."""
    return float(max(1, math.ceil(wait_s)))


def subjects_for(email: str | None, client: str | None) -> list[tuple[Scope, str]]:
    """The (scope, subject) pairs one attempt counts against, in lock order."""
    subjects: list[tuple[Scope, str]] = []
    if email:
        subjects.append(("account", email[:MAX_SUBJECT_LENGTH]))
    if client:
        subjects.append(("client", client_key(client)[:MAX_SUBJECT_LENGTH]))
    return subjects


# --- units of work --------------------------------------------------------------------------------------------


async def charge_attempt(
    conn: asyncpg.Connection, now: datetime, policy: ThrottlePolicy, subjects: list[tuple[Scope, str]]
) -> float:
    """Admit an attempt at ``now`` and charge it as a failure, or refuse it: return the seconds to wait (0: admitted).

    Locks the rows of ``subjects`` (creating them), so concurrent attempts on
    one account or client are counted one after the other. A refused attempt
    changes nothing.
    """
    if not subjects:
        return 0.0
    scopes = [scope for scope, _ in subjects]
    names = [subject for _, subject in subjects]
    # A new row holds no failure yet; its times are only placeholders until the charge below sets them.
    await conn.execute(
        "INSERT INTO auth.login_failures (scope, subject, failures, first_failure_at, last_failure_at)"
        " SELECT s, n, 0, $3::timestamptz, $3::timestamptz FROM unnest($1::text[], $2::text[]) AS u(s, n) ORDER BY s, n"
        " ON CONFLICT (scope, subject) DO NOTHING",
        scopes,
        names,
        now,
    )
    rows = await conn.fetch(
        "SELECT scope, subject, failures, first_failure_at, last_failure_at, locked_until"
        " FROM auth.login_failures WHERE (scope, subject) IN (SELECT * FROM unnest($1::text[], $2::text[]))"
        " ORDER BY scope, subject FOR UPDATE",
        scopes,
        names,
    )
    counts = {
        (row["scope"], row["subject"]): FailureCount(
            row["failures"], row["first_failure_at"], row["last_failure_at"], row["locked_until"]
        )
        for row in rows
    }
    wait = max((wait_before_attempt(count, now, policy) for count in counts.values()), default=0.0)
    if wait > 0:
        return wait
    for (scope, subject), count in counts.items():
        charged = after_failure(count, now, policy)
        await conn.execute(
            "UPDATE auth.login_failures SET failures = $3, first_failure_at = $4, last_failure_at = $5,"
            " locked_until = $6 WHERE scope = $1 AND subject = $2",
            scope,
            subject,
            charged.failures,
            charged.first_failure_at,
            charged.last_failure_at,
            charged.locked_until,
        )
    return 0.0


async def settle_success(conn: asyncpg.Connection, policy: ThrottlePolicy, subjects: list[tuple[Scope, str]]) -> None:
    """After a successful attempt: the account's count is cleared, the client's charge refunded.

    It takes no ``now``: nothing here depends on the time (the refunded charge keeps the time it was made at).
    """
    for scope, subject in subjects:
        if scope == "account":
            await conn.execute("DELETE FROM auth.login_failures WHERE scope = 'account' AND subject = $1", subject)
            continue
        await conn.execute(
            "UPDATE auth.login_failures SET failures = greatest(failures - 1, 0),"
            " locked_until = CASE WHEN failures - 1 >= $2 THEN locked_until END"
            " WHERE scope = $1 AND subject = $3",
            scope,
            policy.lock_after,
            subject,
        )
        await conn.execute(
            "DELETE FROM auth.login_failures WHERE scope = $1 AND subject = $2 AND failures = 0", scope, subject
        )


async def prune_failures(conn: asyncpg.Connection, now: datetime, policy: ThrottlePolicy) -> int:
    """Delete counts that no longer count at ``now`` (last failure out of the window, no lock); return how many."""
    status = await conn.execute(
        "DELETE FROM auth.login_failures WHERE last_failure_at < $1 AND (locked_until IS NULL OR locked_until < $2)",
        now - timedelta(seconds=policy.window_s),
        now,
    )
    return int(status.split()[-1])
