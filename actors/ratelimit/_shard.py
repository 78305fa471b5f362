"""The shared state of rate limits: token buckets in named actors, one share of the keys each.

A key is ``<class>:<identity>`` (``read:sub:<user id>``, ``auth:ip:203.0.113.7``);
shard ``k`` of ``n`` owns the keys whose stable hash (CRC-32) is ``k`` modulo ``n``,
so every gateway replica asks the same actor about the same key. An actor only
hands out leases (:meth:`ShardState.lease`) and takes back what a replica did not
spend (:meth:`ShardState.give_back`); the replicas spend the tokens themselves.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray
from ray.actor import ActorHandle

from strata.actors._detached import ensure_detached
from strata.actors.ratelimit._bucket import RatePolicy, TokenBucket, lease_size

_EVICT_EVERY_S = 10.0


@dataclass(frozen=True, slots=True)
class Grant:
    """A shard's answer to a lease request."""

    tokens: int
    """Tokens leased (0: the bucket is empty)."""
    left: int
    """Whole tokens left in the shared bucket after this lease."""
    retry_after_s: float
    """With no token leased: seconds until the bucket holds one again."""


class _Entry:
    __slots__ = ("bucket", "holders", "leases", "policy")

    def __init__(self, policy: RatePolicy, now: float) -> None:
        self.policy = policy
        self.bucket = TokenBucket(policy, now)
        self.holders: dict[str, int] = {}
        self.leases = 0


class ShardState:
    """The buckets of one shard (plain Python; :class:`RateLimitShard` is its actor).

    ``holders`` counts, per key, the tokens each gateway replica leased and kept
    (leased minus given back): what shows that the replicas share one allowance.
    A bucket untouched for a whole window is full again and is dropped.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._evicted_at = clock()
        self.leases = 0

    def _entry(self, key: str, policy: RatePolicy, now: float) -> _Entry:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(policy, now)
        entry.policy = policy  # the newest settings win
        return entry

    def lease(self, key: str, policy: RatePolicy, fraction: float, returning: int, holder: str) -> Grant:
        """Take back ``returning`` unspent tokens of ``holder``'s previous lease, then lease it some more."""
        now = self._clock()
        self._evict_idle(now)
        entry = self._entry(key, policy, now)
        if returning > 0:
            entry.bucket.give_back(policy, returning, now)
            entry.holders[holder] = entry.holders.get(holder, 0) - returning
        entry.bucket.refill(policy, now)
        tokens = entry.bucket.take(policy, lease_size(policy, entry.bucket.tokens, fraction), now)
        self.leases += 1
        entry.leases += 1
        if tokens:
            entry.holders[holder] = entry.holders.get(holder, 0) + tokens
            return Grant(tokens, int(entry.bucket.tokens), 0.0)
        return Grant(0, 0, entry.bucket.seconds_until(policy, 1.0))

    def give_back(self, key: str, policy: RatePolicy, tokens: int, holder: str) -> None:
        """``holder``'s lease expired with ``tokens`` unspent: they count for everyone again."""
        entry = self._entries.get(key)
        if entry is None or tokens <= 0:
            return  # evicted: the bucket is full anyway
        entry.bucket.give_back(policy, tokens, self._clock())
        entry.holders[holder] = entry.holders.get(holder, 0) - tokens

    def inspect(self, key: str) -> dict[str, Any] | None:
        """The bucket of ``key``: tokens now, tokens kept per holder, lease requests; ``None`` if it has none."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        entry.bucket.refill(entry.policy, self._clock())
        return {
            "policy": str(entry.policy),
            "tokens": entry.bucket.tokens,
            "holders": dict(entry.holders),
            "leases": entry.leases,
        }

    def stats(self) -> dict[str, Any]:
        return {"keys": len(self._entries), "leases": self.leases}

    def _evict_idle(self, now: float) -> None:
        if now - self._evicted_at < _EVICT_EVERY_S:
            return
        self._evicted_at = now
        idle = [key for key, e in self._entries.items() if now - e.bucket.updated >= e.policy.window_s]
        for key in idle:
            del self._entries[key]


class RateLimitShard:
    """Actor holding one share of the buckets (``num_cpus: 0``; a restart starts with full buckets)."""

    def __init__(self, shard: int, shards: int) -> None:
        if not 0 <= shard < shards:
            raise ValueError(f"shard={shard} must be in [0, {shards})")
        self._shard = shard
        self._shards = shards
        self._state = ShardState()

    async def lease(self, key: str, policy: RatePolicy, fraction: float, returning: int, holder: str) -> Grant:
        return self._state.lease(key, policy, fraction, returning, holder)

    async def give_back(self, key: str, policy: RatePolicy, tokens: int, holder: str) -> None:
        self._state.give_back(key, policy, tokens, holder)

    async def inspect(self, key: str) -> dict[str, Any] | None:
        return self._state.inspect(key)

    async def stats(self) -> dict[str, Any]:
        return {"shard": self._shard, "shards": self._shards, **self._state.stats()}


_RemoteShard = ray.remote(RateLimitShard)


def shard_name(shard: int) -> str:
    return f"strata-ratelimit-{shard}"


def shard_of(key: str, shards: int) -> int:
    """The shard owning ``key``: a hash every process computes alike (not Python's salted ``hash``)."""
    return zlib.crc32(key.encode()) % shards


def ensure_rate_limit_shards(shards: int) -> list[ActorHandle[Any]]:
    """The ``shards`` rate-limit actors, created (detached, restarted by Ray) where missing. Idempotent."""
    return [ensure_detached(_RemoteShard, shard_name(shard), shard, shards) for shard in range(shards)]


class ShardedLeases:
    """A gateway replica's :class:`~strata.actors.ratelimit.LeaseSource`: each key's shard actor.

    ``holder`` names the replica in the shards' accounting; ``fraction`` caps a
    lease at that share of the quota.
    """

    def __init__(self, handles: list[ActorHandle[Any]], holder: str, fraction: float) -> None:
        if not handles:
            raise ValueError("at least one rate-limit shard is needed")
        self._handles = handles
        self._holder = holder
        self._fraction = fraction

    def _shard(self, key: str) -> Any:  # an ActorHandle; Ray's stubs do not type remote methods
        return self._handles[shard_of(key, len(self._handles))]

    async def lease(self, key: str, policy: RatePolicy, returning: int) -> Grant:
        grant: Grant = await self._shard(key).lease.remote(key, policy, self._fraction, returning, self._holder)
        return grant

    async def give_back(self, key: str, policy: RatePolicy, tokens: int) -> None:
        await self._shard(key).give_back.remote(key, policy, tokens, self._holder)
