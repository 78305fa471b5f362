"""The login throttle's arithmetic: backoff, lock, window (pure functions, an injected clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from strata.serve_apps.auth._throttle import (
    FailureCount,
    ThrottlePolicy,
    after_failure,
    retry_after_header,
    subjects_for,
    wait_before_attempt,
)

POLICY = ThrottlePolicy(free_failures=3, lock_after=10, lock_s=900, window_s=900, max_backoff_s=60)
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def failures_at(n: int, at: datetime = T0) -> FailureCount:
    count: FailureCount | None = None
    for _ in range(n):
        count = after_failure(count, at, POLICY)
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


def test_subjects_are_the_account_then_the_client_and_skip_what_is_missing() -> None:
    assert subjects_for("a@example.org", "10.0.0.1") == [("account", "a@example.org"), ("client", "10.0.0.1")]
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
