"""The login throttle's arithmetic: backoff, lock, window (pure functions, an injected clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from strata.serve_apps.auth._throttle import (
    FailureCount,
    Scope,
    ThrottlePolicy,
    after_failure,
    retry_after_header,
    subjects_for,
    wait_before_attempt,
    wait_for_attempt,
)

POLICY = ThrottlePolicy(
    free_failures=3,
    lock_after=10,
    lock_s=900,
    window_s=900,
    max_backoff_s=60,
    account_free_failures=10,
    client_free_failures=20,
)
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def failures_at(n: int, at: datetime = T0, scope: Scope = "pair") -> FailureCount:
    count: FailureCount | None = None
    for _ in range(n):
        count = after_failure(count, at, POLICY, scope)
    assert count is not None
    return count


@pytest.mark.parametrize(
    ("failures", "backoff"), [(0, 0), (2, 0), (3, 1), (4, 2), (5, 4), (8, 32), (9, 60), (40, 60), (10_000, 60)]
)
def test_backoff_doubles_from_the_free_failures_up_to_its_cap(failures: int, backoff: float) -> None:
    assert POLICY.backoff_s(failures) == backoff


def test_the_free_failures_need_no_wait() -> None:
    assert wait_before_attempt(None, T0, POLICY) == 0
    assert wait_before_attempt(failures_at(2), T0, POLICY) == 0


def test_after_the_free_failures_the_next_attempt_waits_its_backoff_from_the_last_failure() -> None:
    count = failures_at(4)
    assert wait_before_attempt(count, T0, POLICY) == 2
    assert wait_before_attempt(count, T0 + timedelta(seconds=1.5), POLICY) == 0.5
    assert wait_before_attempt(count, T0 + timedelta(seconds=2), POLICY) == 0


def test_reaching_lock_after_locks_for_lock_s() -> None:
    count = failures_at(10)
    assert count.locked_until == T0 + timedelta(seconds=900)
    assert wait_before_attempt(count, T0 + timedelta(seconds=100), POLICY) == 800


def test_failures_out_of_the_window_no_longer_count() -> None:
    count = failures_at(6)
    later = T0 + timedelta(seconds=901)
    assert wait_before_attempt(count, later, POLICY) == 0
    restarted = after_failure(count, later, POLICY)
    assert (restarted.failures, restarted.first_failure_at, restarted.locked_until) == (1, later, None)


def test_a_failure_after_a_lock_expired_within_the_window_locks_again() -> None:
    policy = ThrottlePolicy(free_failures=3, lock_after=10, lock_s=60, window_s=900)
    count: FailureCount | None = None
    for _ in range(10):
        count = after_failure(count, T0, policy)
    assert count is not None
    later = T0 + timedelta(seconds=120)
    assert wait_before_attempt(count, later, policy) == 0  # lock over, backoff (capped at 60 s) over
    again = after_failure(count, later, policy)
    assert again.failures == 11 and again.locked_until == later + timedelta(seconds=60)


def test_the_count_keeps_its_first_failure() -> None:
    first = after_failure(None, T0, POLICY)
    second = after_failure(first, T0 + timedelta(seconds=5), POLICY)
    assert (second.failures, second.first_failure_at, second.last_failure_at) == (
        2,
        T0,
        T0 + timedelta(seconds=5),
    )


@pytest.mark.parametrize(("wait", "header"), [(0.01, 1), (1.0, 1), (1.2, 2), (899.5, 900)])
def test_retry_after_is_whole_seconds_and_at_least_one(wait: float, header: float) -> None:
    assert retry_after_header(wait) == header


def test_subjects_are_the_account_the_client_and_their_pair_and_skip_what_is_missing() -> None:
    assert subjects_for("a@example.org", "10.0.0.1") == [
        ("account", "a@example.org"),
        ("client", "10.0.0.1"),
        ("pair", "10.0.0.1 a@example.org"),
    ]
    assert subjects_for("a@example.org", None) == [("account", "a@example.org")]
    assert subjects_for("a@example.org", "") == [("account", "a@example.org")]
    assert subjects_for("x" * 1000, None)[0][1] == "x" * 320


def test_the_client_subject_is_an_ipv4_address_or_an_ipv6_slash_64() -> None:
    assert subjects_for(None, "198.51.100.9") == [("client", "198.51.100.9")]
    assert (
        subjects_for(None, "2001:db8:7:8::1")
        == subjects_for(None, "2001:db8:7:8:9::2")
        == [("client", "2001:db8:7:8::/64")]
    )
    assert subjects_for(None, "::ffff:198.51.100.9") == [("client", "198.51.100.9")]


# --- the shared scopes: bounded backoff, never a lock -------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "failures", "backoff"),
    [
        ("account", 9, 0),
        ("account", 10, 1),
        ("account", 13, 8),
        ("account", 17, 60),
        ("account", 10_000, 60),
        ("client", 19, 0),
        ("client", 20, 1),
        ("client", 25, 32),
        ("client", 26, 60),
    ],
)
def test_the_account_and_client_scopes_have_their_own_free_failures_and_the_same_cap(
    scope: Scope, failures: int, backoff: float
) -> None:
    assert POLICY.backoff_s(failures, scope) == backoff


@pytest.mark.parametrize("scope", ["account", "client"])
def test_the_account_and_client_scopes_are_never_locked(scope: Scope) -> None:
    count = failures_at(10_000, scope=scope)
    assert count.locked_until is None
    assert wait_before_attempt(count, T0, POLICY, scope) == POLICY.max_backoff_s


@pytest.mark.parametrize("scope", ["account", "client"])
def test_an_attacker_who_waits_out_every_backoff_never_makes_the_next_wait_longer_than_the_cap(scope: Scope) -> None:
    """The measurement: fail as soon as allowed, 2,000 times, and record the wait the next caller is told."""
    now, count, waits = T0, None, []
    for _ in range(2_000):
        wait = wait_before_attempt(count, now, POLICY, scope)
        waits.append(wait)
        now += timedelta(seconds=wait)
        count = after_failure(count, now, POLICY, scope)
    assert max(waits) == POLICY.longest_wait_s(scope) == POLICY.max_backoff_s == 60
    free = POLICY.free_failures_of(scope)
    assert waits[: free + 1] == [0.0] * free + [1.0]  # waits[k]: the wait after k failures
    assert count is not None and count.locked_until is None


def test_only_the_pair_is_locked_and_its_longest_wait_is_the_lock() -> None:
    assert failures_at(10).locked_until == T0 + timedelta(seconds=900)
    assert failures_at(10, scope="account").locked_until is None
    assert POLICY.longest_wait_s("pair") == 900


def test_a_busy_client_does_not_hold_a_login_to_an_account_nobody_failed_on() -> None:
    counts = {
        ("account", "a@example.org"): None,
        ("client", "10.0.0.1"): failures_at(200, scope="client"),
        ("pair", "10.0.0.1 a@example.org"): None,
    }
    assert wait_for_attempt(counts, T0, POLICY) == 0


def test_a_busy_client_backs_off_on_an_account_that_has_failures() -> None:
    counts = {
        ("account", "a@example.org"): failures_at(1, scope="account"),
        ("client", "10.0.0.1"): failures_at(200, scope="client"),
        ("pair", "10.0.0.1 a@example.org"): None,
    }
    assert wait_for_attempt(counts, T0, POLICY) == 60
    assert wait_for_attempt(counts, T0 + timedelta(seconds=60), POLICY) == 0  # bounded by the cap


def test_an_attempt_waits_for_the_slowest_of_its_scopes() -> None:
    counts = {
        ("account", "a@example.org"): failures_at(12, scope="account"),  # 4 s
        ("client", "10.0.0.1"): failures_at(1, scope="client"),
        ("pair", "10.0.0.1 a@example.org"): failures_at(10),  # locked 900 s
    }
    assert wait_for_attempt(counts, T0, POLICY) == 900
    del counts[("pair", "10.0.0.1 a@example.org")]
    assert wait_for_attempt(counts, T0, POLICY) == 4
