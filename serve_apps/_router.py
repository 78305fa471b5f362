"""Least-connection routing of handle calls between deployments, and what a caller does when routing refuses.

Serve's default request router is *power of two choices*: it samples two
replicas and sends the request to the less loaded one. strata routes handle
calls (gateway -> auth, users, data, audit; Serve's Python proxy -> gateway)
with :class:`LeastConnectionRouter` instead: the replica with the fewest
requests in flight wins, ties broken at random. It is configured per deployment
in ``cluster/serve.yaml``::

    request_router_config:
      request_router_class: strata.serve_apps:LeastConnectionRouter

(In HAProxy mode Serve refuses a custom router on an application's ingress
deployment, so each service application enters through a small entry
deployment and the service deployment keeps this router, see
:mod:`strata.serve_apps._entry`; on the gateway strata drops it, HAProxy's
``leastconn`` balances the gateway replicas.)

How the counts are known: each caller (a gateway replica, the proxy) keeps a
cache of in-flight counts per replica. A count is learned from a replica's
answer (every accepted or refused request carries the replica's current number
of ongoing requests, and a probe asks for it), raised by one when the caller
sends a request and lowered by one when the request ends. Entries older than
Serve's cache timeout (``RAY_SERVE_QUEUE_LENGTH_CACHE_TIMEOUT_S``, 10 s) count as
unknown. Unknown replicas are probed (a cheap control call, 0.1 s deadline)
rather than guessed idle or busy.

The choice itself is :func:`rank_least_connection`, a pure function; the router
only feeds it the cache and hands its ranking to Serve, which sends the request
to the first replica of the first rank that accepts it (a replica at
``max_ongoing_requests`` refuses, and the request is routed again).

When every replica is full and the caller's own queue for the deployment is at
``max_queued_requests``, Serve refuses the call at once with
``BackPressureError``; :func:`strata.contracts.refused_as_unavailable` (the callers' side) turns that into
:class:`~strata.schemas.ServiceUnavailable` (503 with ``Retry-After`` at the
gateway).
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ray.serve.request_router import FIFOMixin, PendingRequest, RequestRouter, RunningReplica

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class ReplicaLoad(Generic[K]):
    """What a caller knows of one replica: its requests in flight and how many it takes at most."""

    replica: K
    in_flight: int | None
    """Requests in flight, or ``None`` when unknown (never probed, or the cached count expired)."""
    capacity: int
    """The replica's ``max_ongoing_requests``: at that count it refuses new requests."""


def rank_least_connection(loads: Sequence[ReplicaLoad[K]], rng: random.Random) -> list[list[K]]:
    """Ranks of replicas to try, most preferred first; within a rank the caller takes the least loaded.

    * An idle replica (0 in flight) wins at once: rank 0 is one of them, picked at random, plus every
      unknown replica (which the caller probes in the background, so its count is known next time).
    * Otherwise, unknown replicas are probed first: rank 0 holds all of them (in random order).
    * Then the known replicas with room, one per rank, fewest in flight first, ties in random order.
    * Full replicas (``in_flight >= capacity``) come last, together: the caller probes them, since
      they may have drained since their count was cached.

    An empty input gives no ranks (the caller waits for replicas).
    """
    unknown = [load.replica for load in loads if load.in_flight is None]
    known = [load for load in loads if load.in_flight is not None]
    with_room = [load for load in known if load.in_flight is not None and load.in_flight < load.capacity]
    full = [load.replica for load in known if load.in_flight is not None and load.in_flight >= load.capacity]
    rng.shuffle(unknown)
    # Sort by count; a random secondary key breaks ties at random.
    keyed = [(load.in_flight, rng.random(), load.replica) for load in with_room]
    keyed.sort(key=lambda item: (item[0], item[1]))
    ordered = [replica for _, _, replica in keyed]

    ranks: list[list[K]] = []
    if ordered and keyed[0][0] == 0:
        ranks.append([ordered[0], *unknown])
        ordered = ordered[1:]
    elif unknown:
        ranks.append(unknown)
    ranks.extend([replica] for replica in ordered)
    if full:
        rng.shuffle(full)
        ranks.append(full)
    return ranks


class LeastConnectionRouter(FIFOMixin, RequestRouter):
    """Sends each request to the replica with the fewest requests in flight (ties at random).

    Requests are served in arrival order (``FIFOMixin``), as with Serve's default
    router. Locality and model multiplexing are not used by strata, so this
    router ignores them.
    """

    def initialize_state(self, **kwargs: Any) -> None:
        self._rng = random.Random()

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        if pending_request is not None:
            # Every iteration considers all replicas, so Serve backs off between rounds when all are full.
            pending_request.routing_context.should_backoff = True
        rng: random.Random = getattr(self, "_rng", None) or random.Random()
        cache = self.replica_queue_len_cache
        loads = [
            ReplicaLoad(replica.replica_id, cache.get(replica.replica_id), replica.max_ongoing_requests)
            for replica in candidate_replicas
        ]
        by_id = {replica.replica_id: replica for replica in candidate_replicas}
        return [[by_id[replica_id] for replica_id in rank] for rank in rank_least_connection(loads, rng)]
