"""The gateway replica's side of shared rate limits: spend leased tokens locally, ask a shard only when out.

:class:`LeasedLimiter` keeps, per key, the lease it holds (tokens left, the
shared bucket's level when it was granted, when it expires). A request spends
one leased token with no call at all; only when the lease is spent or expired
does one request per key (the others wait for it) ask the key's shard for the
next lease, handing back whatever the expired lease had left. A shard that
answers "empty" is believed until its ``retry_after``: no call is made for a
client that is being refused.

Leases expire after ``lease_ttl_s``; :meth:`LeasedLimiter.return_expired` (run
periodically by the gateway) gives their unspent tokens back, so tokens parked
at a replica the client stopped reaching count for the other replicas again.
The total allowed across replicas never exceeds the shared bucket; it falls
short of it by at most the tokens in unexpired leases, which
:func:`~strata.actors.ratelimit.lease_size` keeps small as the bucket runs low.

When the shards cannot be reached (a call fails or takes longer than
``call_timeout_s``), the limiter *fails open to a local limit*: for
``fallback_s`` it makes no call and enforces each policy per replica with its
own buckets, so a client gets at most one allowance per gateway replica until
the shards answer again, and no request fails because the limiter is down.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from strata.actors.ratelimit._bucket import RatePolicy, TokenBucket, seconds_to_full
from strata.actors.ratelimit._shard import Grant

logger = logging.getLogger(__name__)

_IDLE_S = 120.0


class LeaseSource(Protocol):
    """Where leases come from (the shard actors; a fake in unit tests)."""

    async def lease(self, key: str, policy: RatePolicy, returning: int) -> Grant: ...

    async def give_back(self, key: str, policy: RatePolicy, tokens: int) -> None: ...


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one request, with what the ``RateLimit`` headers report."""

    allowed: bool
    remaining: int
    """Requests left (as this replica knows it: the shared bucket at its last lease, plus its own lease)."""
    reset_s: float
    """Seconds until the allowance is whole again."""
    retry_after_s: float
    """When refused: seconds until a request may succeed (0 when allowed)."""
    policy: RatePolicy
    shared: bool
    """False when the local fallback decided (the shards were unreachable)."""


class _Lease:
    __slots__ = ("bucket_left", "denied_until", "expires", "left", "pending", "policy", "used")

    def __init__(self, policy: RatePolicy, now: float) -> None:
        self.policy = policy
        self.left = 0
        self.bucket_left = 0
        self.expires = 0.0
        self.denied_until = 0.0
        self.pending: asyncio.Future[None] | None = None
        self.used = now


class LeasedLimiter:
    """Rate limits of one gateway replica, backed by a :class:`LeaseSource`."""

    def __init__(
        self,
        source: LeaseSource,
        *,
        lease_ttl_s: float = 2.0,
        call_timeout_s: float = 0.5,
        fallback_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._lease_ttl_s = lease_ttl_s
        self._call_timeout_s = call_timeout_s
        self._fallback_s = fallback_s
        self._clock = clock
        self._leases: dict[str, _Lease] = {}
        self._local: dict[str, TokenBucket] = {}
        self._fallback_until = -math.inf
        self.calls = 0
        """Lease requests made to the shards."""
        self.spent_locally = 0
        """Requests allowed from a lease without any call."""
        self.last_error: str | None = None

    @property
    def falling_back(self) -> bool:
        return self._clock() < self._fallback_until

    async def check(self, key: str, policy: RatePolicy) -> Decision:
        """Spend one token of ``key`` under ``policy``; the decision (never raises)."""
        while True:
            now = self._clock()
            lease = self._leases.get(key)
            if lease is None:
                lease = self._leases[key] = _Lease(policy, now)
            lease.used = now
            lease.policy = policy
            if lease.left > 0 and now < lease.expires:
                lease.left -= 1
                self.spent_locally += 1
                remaining = lease.bucket_left + lease.left
                return Decision(True, remaining, seconds_to_full(policy, remaining), 0.0, policy, True)
            if now < lease.denied_until:
                return Decision(False, 0, seconds_to_full(policy, 0), lease.denied_until - now, policy, True)
            if now < self._fallback_until:
                return self._check_locally(key, policy, now)
            if lease.pending is not None:
                # Another request of this key is fetching the next lease: wait for it, then look again.
                await asyncio.shield(lease.pending)
                continue
            await self._renew(key, lease, policy)

    async def _renew(self, key: str, lease: _Lease, policy: RatePolicy) -> None:
        pending: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lease.pending = pending
        returning = lease.left  # what the expired lease did not spend
        lease.left = 0
        try:
            grant = await asyncio.wait_for(self._source.lease(key, policy, returning), self._call_timeout_s)
        except Exception as exc:  # noqa: BLE001 - any failure of the shards means the local fallback
            self._fall_back(exc)
            return
        finally:
            lease.pending = None
            pending.set_result(None)
        self.calls += 1
        now = self._clock()
        if grant.tokens > 0:
            lease.left = grant.tokens
            lease.bucket_left = grant.left
            lease.expires = now + self._lease_ttl_s
            lease.denied_until = 0.0
        else:
            lease.bucket_left = 0
            lease.denied_until = now + max(grant.retry_after_s, 0.001)

    def _fall_back(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        if not self.falling_back:
            logger.warning(
                "rate-limit shards unreachable (%s): limiting per replica for %.0fs", self.last_error, self._fallback_s
            )
        self._fallback_until = self._clock() + self._fallback_s

    def _check_locally(self, key: str, policy: RatePolicy, now: float) -> Decision:
        bucket = self._local.get(key)
        if bucket is None:
            bucket = self._local[key] = TokenBucket(policy, now)
        if bucket.take(policy, 1, now):
            remaining = math.floor(bucket.tokens)
            return Decision(True, remaining, seconds_to_full(policy, remaining), 0.0, policy, False)
        return Decision(False, 0, seconds_to_full(policy, 0), bucket.seconds_until(policy, 1.0), policy, False)

    async def return_expired(self) -> int:
        """Give the shards back the unspent tokens of expired leases and forget idle keys; the tokens returned."""
        now = self._clock()
        returned = 0
        for key, lease in list(self._leases.items()):
            if lease.pending is not None:
                continue
            if lease.left > 0 and now >= lease.expires and now >= self._fallback_until:
                tokens, lease.left = lease.left, 0
                try:
                    await asyncio.wait_for(self._source.give_back(key, lease.policy, tokens), self._call_timeout_s)
                except Exception as exc:  # noqa: BLE001 - the tokens are lost, which only errs on the strict side
                    self._fall_back(exc)
                    continue
                returned += tokens
            if lease.left == 0 and now - lease.used > _IDLE_S and now >= lease.denied_until:
                del self._leases[key]
        for key, bucket in list(self._local.items()):
            if now - bucket.updated > _IDLE_S:
                del self._local[key]
        return returned

    def stats(self) -> dict[str, object]:
        return {
            "keys": len(self._leases),
            "calls": self.calls,
            "spent_locally": self.spent_locally,
            "falling_back": self.falling_back,
            "last_error": self.last_error,
        }
