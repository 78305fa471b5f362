"""Brute-force protection of logins: three scopes, bounded backoff, and a lock only where it hurts the attacker alone.

An attempt counts against three scopes in ``auth.login_failures``:

``pair``     the email tried (whether or not an account has it) from one client (its
             :func:`~strata.schemas.client_key`: an IPv4 address, an IPv6 /64)
``account``  the email, from any client
``client``   the client, whatever the email

With ``f`` failures in a scope, the last at ``t``, the next attempt waits::

    pair     f <  free_failures            no wait
             f >= free_failures            until t + min(2 ** (f - free_failures), max_backoff) s
             f >= lock_after               locked until t + lock_s
    account  f >= account_free_failures    until t + min(2 ** (f - account_free_failures), max_backoff) s
    client   f >= client_free_failures     as the account, with client_free_failures; and only on an email
                                           that has failures of its own (an account scope with f > 0)
    any      t older than window_s         the count starts again

So only the pair is ever locked: one client hammering one account locks itself
out of that account and nobody else. The account and the client scopes back off
exponentially but never wait longer than ``max_backoff_s``, however many
failures they pile up: whoever owns the account waits at most that long (an
attacker with many addresses cannot keep it locked), and the people behind a
busy address (a NAT, a proxy, an API fuzzer on loopback) log in to accounts
nobody has failed on at once. The longest wait a policy imposes after any number
of failures is :meth:`ThrottlePolicy.longest_wait_s`.

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
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import asyncpg

from strata.schemas import Settings, client_key

Scope = Literal["account", "client", "pair"]
MAX_SUBJECT_LENGTH = 320


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """The knobs of the throttle (from the ``login_*`` settings); see the module docstring for what each does."""

    free_failures: int = 3
    lock_after: int = 10
    lock_s: float = 900.0
    window_s: float = 900.0
    max_backoff_s: float = 60.0
    account_free_failures: int = 10
    client_free_failures: int = 20

    @classmethod
    def from_settings(cls, settings: Settings) -> ThrottlePolicy:
        return cls(
            free_failures=settings.login_free_failures,
            lock_after=settings.login_lock_after,
            lock_s=float(settings.login_lock_s),
            window_s=float(settings.login_failure_window_s),
            max_backoff_s=float(settings.login_max_backoff_s),
            account_free_failures=settings.login_account_free_failures,
            client_free_failures=settings.login_client_free_failures,
        )

    def free_failures_of(self, scope: Scope) -> int:
        """Failures of ``scope`` that cost no wait."""
        if scope == "account":
            return self.account_free_failures
        if scope == "client":
            return self.client_free_failures
        return self.free_failures

    def backoff_s(self, failures: int, scope: Scope = "pair") -> float:
        """Seconds to wait after the last of ``failures`` failures of ``scope`` (0 below its free failures)."""
        free = self.free_failures_of(scope)
        if failures < free:
            return 0.0
        exponent = failures - free
        if exponent >= 32:  # 2**32 s is past any cap
            return self.max_backoff_s
        return float(min(2**exponent, self.max_backoff_s))

    def longest_wait_s(self, scope: Scope) -> float:
        """The longest wait ``scope`` ever imposes, whatever the number of failures: ``max_backoff_s`` for the
        account and the client, the lock (or the backoff, if longer) for the pair."""
        return self.max_backoff_s if scope != "pair" else max(self.lock_s, self.max_backoff_s)


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


def wait_before_attempt(
    count: FailureCount | None, now: datetime, policy: ThrottlePolicy, scope: Scope = "pair"
) -> float:
    """Seconds before the next attempt counted against ``count`` (a row of ``scope``) is allowed (0: now)."""
    if count is None or is_stale(count, now, policy):
        return 0.0
    waits = [0.0]
    if count.locked_until is not None:
        waits.append((count.locked_until - now).total_seconds())
    backoff = policy.backoff_s(count.failures, scope)
    if backoff:
        waits.append((count.last_failure_at - now).total_seconds() + backoff)
    return max(waits)


def after_failure(
    count: FailureCount | None, now: datetime, policy: ThrottlePolicy, scope: Scope = "pair"
) -> FailureCount:
    """The count of ``scope`` once one more failure at ``now`` is added (a stale count starts again).

    Only a pair is locked; an account or a client count never is.
    """
    if count is None or count.failures == 0 or is_stale(count, now, policy):
        failures, first = 1, now
    else:
        failures, first = count.failures + 1, count.first_failure_at
    locked_until = count.locked_until if count is not None and count.failures else None
    if scope == "pair" and failures >= policy.lock_after:
        locked_until = now + timedelta(seconds=policy.lock_s)
    elif locked_until is not None and locked_until <= now:
        locked_until = None
    return FailureCount(failures, first, now, locked_until)


def retry_after_header(wait_s: float) -> float:
    """A wait as ``Retry-After`` gives it: whole seconds, at least 1."""
    return float(max(1, math.ceil(wait_s)))


def subjects_for(email: str | None, client: str | None) -> list[tuple[Scope, str]]:
    """The (scope, subject) pairs one attempt counts against, in lock order (sorted).

    The client is counted by its :func:`~strata.schemas.client_key`; a pair's
    subject is ``"<client key> <email>"`` (a client key holds no space).
    """
    subjects: list[tuple[Scope, str]] = []
    account = email[:MAX_SUBJECT_LENGTH] if email else None
    key = client_key(client)[:MAX_SUBJECT_LENGTH] if client else None
    if account:
        subjects.append(("account", account))
    if key:
        subjects.append(("client", key))
    if account and key:
        subjects.append(("pair", f"{key} {account}"))
    return subjects


def wait_for_attempt(
    counts: Mapping[tuple[Scope, str], FailureCount | None], now: datetime, policy: ThrottlePolicy
) -> float:
    """Seconds before an attempt counted against ``counts`` (by scope and subject) is allowed (0: now).

    The longest wait of its scopes, where a client's backoff applies only when
    the attempt's email has live failures of its own: a busy address slows the
    guessing of accounts under attack, never the login to one nobody failed on.
    """
    account_failing = any(
        scope == "account" and count is not None and count.failures > 0 and not is_stale(count, now, policy)
        for (scope, _), count in counts.items()
    )
    waits = [
        wait_before_attempt(count, now, policy, scope)
        for (scope, _), count in counts.items()
        if scope != "client" or account_failing
    ]
    return max(waits, default=0.0)


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
    counts: dict[tuple[Scope, str], FailureCount | None] = {
        (row["scope"], row["subject"]): FailureCount(
            row["failures"], row["first_failure_at"], row["last_failure_at"], row["locked_until"]
        )
        for row in rows
    }
    wait = wait_for_attempt(counts, now, policy)
    if wait > 0:
        return wait
    for (scope, subject), count in counts.items():
        charged = after_failure(count, now, policy, scope)
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
    """After a successful attempt: the account's and the pair's counts are cleared, the client's charge refunded.

    It takes no ``now``: nothing here depends on the time (the refunded charge keeps the time it was made at).
    """
    for scope, subject in subjects:
        if scope != "client":
            await conn.execute("DELETE FROM auth.login_failures WHERE scope = $1 AND subject = $2", scope, subject)
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
