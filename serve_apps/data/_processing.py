"""The data service's CPU-bound work as its own deployment, ``DataProcessing``: collection statistics.

It is a deployment of the data application (the data service's database role and schema, its own replicas), reached
by handle from the gateway (:class:`~strata.contracts.StatsClient`; it implements
:class:`~strata.contracts.StatsOperations`), one hop like every service call. It scales on CPU, not on requests
(:mod:`strata.serve_apps._autoscaling`): each replica reports its process's CPU use to Serve from
``record_autoscaling_stats``, and the policy in ``cluster/serve.yaml`` turns the reports into a replica count.

Each replica keeps the statistics it computed per collection (:class:`~strata.serve_apps.data._stats.StatsCache`)
and drops a collection's as soon as one of its events arrives: the replica follows the data service's topic itself
(:class:`CollectionEvents`, no consumer group: every replica needs every event), from its end, since a new replica
starts with an empty cache. While the feed is broken the cache answers nothing (each break starts a new epoch), so a
cached answer is never older than the events the replica has read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from ray import serve

from strata.actors import Backoff, inc_counter, keep_running
from strata.actors.kafka import client_options, partitions_of, stop_quietly
from strata.actors.postgres import current_scope
from strata.contracts import StatsOperations
from strata.schemas import CollectionStats, DataCaller, service_spec
from strata.schemas.events import EVENT_TYPES, check_provenance, decode
from strata.serve_apps._autoscaling import CPU_METRIC, CpuMeter
from strata.serve_apps._replica import ServiceReplica
from strata.serve_apps.data._access import collection_access
from strata.serve_apps.data._stats import StatsCache, StatsLimits, collection_stats

logger = logging.getLogger(__name__)

TOPICS = service_spec("data").reads
_COLLECTION_EVENTS = frozenset(e.type for e in EVENT_TYPES.values() if e.topic in TOPICS)
"""The types that travel on the topics followed: each names the collection it changed."""


class CollectionEvents:
    """Follows the collection topic and drops what the cache holds of each collection an event names."""

    def __init__(self, settings: Any, cache: StatsCache) -> None:
        self._settings = settings
        self._cache = cache
        self._backoff = Backoff(first=0.2, cap=5.0)
        self._task: asyncio.Task[None] | None = None
        self.current = False
        """The feed is reading: only then does the cache answer."""
        self.applied = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                keep_running(self._follow, self._backoff, self._failed), name="stats-invalidation"
            )

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _failed(self, exc: BaseException, pause: float) -> None:
        self._broken()
        logger.warning("statistics invalidation feed: %s: %s; retrying in %.1fs", type(exc).__name__, exc, pause)

    def _broken(self) -> None:
        self.current = False
        self._cache.new_epoch()

    async def _follow(self) -> None:
        options = client_options(self._settings, "data")
        admin = AIOKafkaAdminClient(**options)
        await admin.start()
        try:
            partitions = await partitions_of(admin, list(TOPICS))
        finally:
            await admin.close()
        if not partitions:  # no topic yet: nothing to invalidate, and nothing cached survives a later start
            await asyncio.sleep(5.0)
            return
        consumer = AIOKafkaConsumer(**options, enable_auto_commit=False, group_id=None)
        await consumer.start()
        try:
            consumer.assign(partitions)
            await consumer.seek_to_end(*partitions)
            for tp in partitions:  # the end, resolved now: what happened before this replica cached anything
                await consumer.position(tp)
            self._cache.new_epoch()
            self._backoff.succeeded()
            polled = {tp: consumer.last_poll_timestamp(tp) for tp in partitions}
            quiet = 0.0
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        self._apply(record.topic, record.value)
                # getmany() also answers (empty) with the broker gone: only a fetch response moves the poll times.
                now_polled = {tp: consumer.last_poll_timestamp(tp) for tp in partitions}
                if now_polled != polled:
                    polled, quiet = now_polled, 0.0
                    self.current = True
                else:
                    quiet += 0.5
                    if quiet > self._settings.revocation_feed_stale_after_s and self.current:
                        logger.warning("statistics invalidation feed: no answer from Kafka; not serving cached figures")
                        self._broken()
        finally:
            self._broken()
            await stop_quietly(consumer)

    def _apply(self, topic: str, value: bytes | None) -> None:
        try:
            event = decode(value or b"")
            check_provenance(topic, event)
        except ValueError:
            return  # not the data service's event: it changes nothing here
        if event.type in _COLLECTION_EVENTS:
            collection_id = getattr(event.data, "collection_id", None)
            if isinstance(collection_id, str):
                self._cache.invalidate(collection_id)
                self.applied += 1


@serve.deployment  # its options are in cluster/serve.yaml, the one place for them
class DataProcessing(ServiceReplica):
    """Replica of the data service's CPU-bound work: collection statistics, cached until the collection changes."""

    service = "data"

    async def __init__(self) -> None:  # type: ignore[misc]  # Serve awaits an async constructor
        await super().__init__()
        self._limits = StatsLimits.from_settings(self._settings)
        self._cache = StatsCache(self._settings.data_stats_cache_entries)
        self._events = CollectionEvents(self._settings, self._cache)
        self._events.start()
        self._meter = CpuMeter()

    def record_autoscaling_stats(self) -> dict[str, float]:
        """What Serve's CPU policy reads (``cpu_utilization``): this process's CPU since the last report."""
        return {CPU_METRIC: self._meter.read()}

    async def collection_stats(self, caller: DataCaller, collection_id: str) -> CollectionStats:
        """The collection's statistics (its reader may ask; strangers get ``CollectionNotFound``)."""
        scope = current_scope()
        after = scope.after if scope is not None else None
        await self.db.read(collection_access, caller, collection_id)  # who may read it is never cached nor shared
        current = self._events.current
        if current:
            cached = self._cache.lookup(collection_id, after)
            if cached is not None:
                _count("hit")
                return cached
        stats, joined = await self._cache.single_flight(
            collection_id,
            after,
            lambda: self.db.read(collection_stats, caller, collection_id, limits=self._limits),
            join=current,
        )
        _count("joined" if joined else "miss")
        return stats

    async def __del__(self) -> None:
        events = getattr(self, "_events", None)
        if events is not None:
            await events.aclose()
        await super().__del__()


def _count(outcome: str) -> None:
    inc_counter(
        "strata_stats_cache_total",
        "Collection statistics answered from the cache (hit), computed (miss), or taken from a computation of the"
        " same collection another request had under way (joined).",
        {"outcome": outcome},
    )


def _implements(processing: DataProcessing) -> StatsOperations:
    """Never called: mypy checks here that the deployment implements every call of its contract, with its signature
    (the class as written: ``@serve.deployment`` leaves what mypy sees of it unchanged)."""
    return processing
