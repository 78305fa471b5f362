"""Token buckets and lease sizing: the arithmetic of strata's rate limits, with no Ray in it.

A class's limit is a :class:`RatePolicy`, ``quota`` requests per ``window_s``
seconds: a bucket holds at most ``quota`` tokens and refills continuously at
``quota / window_s`` tokens a second, so a client may burst ``quota`` requests
and then go on at the refill rate. Over any span of ``T`` seconds a client gets
at most ``quota + quota * T / window_s`` requests.

Gateway replicas do not take tokens one by one: they take *leases* of several
tokens (:func:`lease_size`), at most ``lease_fraction`` of the quota and never
more than a quarter of what the bucket holds, so that when the bucket runs low
the leases shrink to one token and no replica sits on tokens another one needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RatePolicy:
    """``quota`` requests per ``window_s`` seconds (a bucket of ``quota`` tokens refilled over ``window_s``)."""

    quota: int
    window_s: float

    def __post_init__(self) -> None:
        if self.quota < 1:
            raise ValueError(f"a rate limit's quota must be at least 1, got {self.quota}")
        if not self.window_s > 0:
            raise ValueError(f"a rate limit's window must be longer than 0 s, got {self.window_s}")

    @property
    def rate(self) -> float:
        """Tokens added per second."""
        return self.quota / self.window_s

    def __str__(self) -> str:
        return f"{self.quota}/{self.window_s:g}s"


class TokenBucket:
    """One bucket: ``tokens`` (fractional while refilling) as of ``updated`` (a monotonic time)."""

    __slots__ = ("tokens", "updated")

    def __init__(self, policy: RatePolicy, now: float) -> None:
        self.tokens = float(policy.quota)
        self.updated = now

    def refill(self, policy: RatePolicy, now: float) -> None:
        if now > self.updated:
            self.tokens = min(float(policy.quota), self.tokens + (now - self.updated) * policy.rate)
            self.updated = now
        # A policy lowered since the bucket filled never leaves more than the new quota.
        self.tokens = min(self.tokens, float(policy.quota))

    def take(self, policy: RatePolicy, wanted: int, now: float) -> int:
        """Take up to ``wanted`` whole tokens; the number taken."""
        self.refill(policy, now)
        taken = max(0, min(wanted, math.floor(self.tokens)))
        self.tokens -= taken
        return taken

    def give_back(self, policy: RatePolicy, tokens: int, now: float) -> None:
        """Return unspent tokens of a lease (never above the quota)."""
        self.refill(policy, now)
        self.tokens = min(float(policy.quota), self.tokens + max(0, tokens))

    def seconds_until(self, policy: RatePolicy, level: float) -> float:
        """Seconds until the bucket holds ``level`` tokens, if nobody takes any (as of ``updated``)."""
        return max(0.0, (min(level, float(policy.quota)) - self.tokens) / policy.rate)


def lease_size(policy: RatePolicy, available: float, fraction: float) -> int:
    """How many tokens one lease takes when the bucket holds ``available``: at most ``fraction`` of the
    quota (at least 1), at most a quarter of what is left; 0 when not one whole token is left."""
    if available < 1:
        return 0
    cap = max(1, math.floor(policy.quota * fraction))
    return max(1, min(cap, math.floor(available / 4)))


def seconds_to_full(policy: RatePolicy, remaining: float) -> float:
    """Seconds until a bucket holding ``remaining`` tokens is full again (the ``t`` of the ``RateLimit`` header)."""
    return max(0.0, (policy.quota - remaining) / policy.rate)
