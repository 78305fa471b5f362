"""Rate limits shared by every gateway replica: token buckets in sharded actors, spent through small leases.

- :class:`RatePolicy`, :class:`TokenBucket`, :func:`lease_size`: the arithmetic (no Ray).
- :class:`RateLimitShard` (actor) over :class:`ShardState`: one share of the buckets, keyed by
  ``<class>:<identity>``; :func:`ensure_rate_limit_shards` finds or creates the actors.
- :class:`LeasedLimiter`: a gateway replica's limiter, spending leased tokens locally, with a per-replica
  fallback when the shards are unreachable; :class:`ShardedLeases` connects it to the actors.
"""

from strata.actors.ratelimit._bucket import RatePolicy, TokenBucket, lease_size, seconds_to_full
from strata.actors.ratelimit._limiter import Decision, LeasedLimiter, LeaseSource
from strata.actors.ratelimit._shard import (
    Grant,
    RateLimitShard,
    ShardedLeases,
    ShardState,
    ensure_rate_limit_shards,
    shard_name,
    shard_of,
)

__all__ = [
    "Decision",
    "Grant",
    "LeaseSource",
    "LeasedLimiter",
    "RateLimitShard",
    "RatePolicy",
    "ShardState",
    "ShardedLeases",
    "TokenBucket",
    "ensure_rate_limit_shards",
    "lease_size",
    "seconds_to_full",
    "shard_name",
    "shard_of",
]
