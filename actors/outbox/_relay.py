"""Relay actors: publish a service's outbox rows to Kafka, in order, and mark them sent.

Relay ``k`` of ``n`` for a service owns the outbox rows whose ``key_hash % n ==
k``, so every key goes through exactly one relay and keeps its order. A relay:

1. holds a session advisory lock for its share, so a stray second copy (say,
   during a restart) stays idle instead of publishing out of order;
2. wakes on ``NOTIFY`` from :func:`record_event` and polls as a fallback;
3. publishes a batch in ``seq`` order with the idempotent producer and
   ``acks=all``, and marks sent only the rows up to the first one the broker
   did not acknowledge; the rest are sent again (consumers deduplicate by id);
4. backs off (doubling, capped) while Kafka or PostgreSQL is unreachable and
   resumes on its own;
5. prunes sent rows older than ``outbox_retention_hours``.

The actors are named ``strata-relay-<service>-<k>`` in namespace ``strata``,
detached, restarted by Ray when they die; a relay killed mid-batch leaves its
rows unsent, and the restarted one publishes them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from typing import Any

import asyncpg
import ray
from aiokafka import AIOKafkaProducer
from ray.actor import ActorHandle

from strata.actors import Backoff, keep_running
from strata.actors._detached import ensure_detached
from strata.actors._metrics import inc_counter, set_gauge
from strata.actors.kafka import client_options, stop_quietly
from strata.actors.outbox._record import notify_channel
from strata.actors.postgres import check_service_name, service_dsn
from strata.schemas import Settings

logger = logging.getLogger(__name__)

CONTENT_TYPE = ("content-type", b"application/cloudevents+json; charset=UTF-8")
_MAX_BACKOFF_S = 5.0
_PRUNE_EVERY_S = 60.0
_MEASURE_EVERY_S = 5.0
"""How often a relay records its share's backlog as metrics, seconds."""


def relay_name(service: str, shard: int) -> str:
    return f"strata-relay-{check_service_name(service)}-{shard}"


def _lock_key(service: str, shard: int, shards: int) -> int:
    digest = hashlib.sha256(f"strata-relay:{service}:{shard}/{shards}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class OutboxRelay:
    """One relay: one share of one service's outbox."""

    async def __init__(self, service: str, shard: int, shards: int) -> None:  # type: ignore[misc]  # Ray awaits it
        if not 0 <= shard < shards:
            raise ValueError(f"shard={shard} must be in [0, {shards})")
        self._service = check_service_name(service)
        self._settings = Settings.of_service(service)
        self._shard = shard
        self._shards = shards
        self._wake = asyncio.Event()
        self._published = 0
        self._last_error: str | None = None
        self._leader = False
        self._backoff = Backoff(first=0.1, cap=_MAX_BACKOFF_S)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"relay-{service}-{shard}")

    # --- remote API --------------------------------------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        """What this relay has done; ``running`` is false only if its loop ended (a bug)."""
        return {
            "service": self._service,
            "shard": self._shard,
            "shards": self._shards,
            "leader": self._leader,
            "published": self._published,
            "last_error": self._last_error,
            "running": not self._task.done(),
            "pid": os.getpid(),
        }

    async def wake(self) -> None:
        self._wake.set()

    # --- the loop ----------------------------------------------------------------------------------

    async def _run(self) -> None:
        await keep_running(self._serve_share, self._backoff, self._failed)

    def _failed(self, exc: BaseException, pause: float) -> None:
        self._last_error = f"{type(exc).__name__}: {exc}"[:500]
        self._leader = False
        logger.warning("relay %s/%d: %s; retrying in %.1fs", self._service, self._shard, self._last_error, pause)

    async def _serve_share(self) -> None:
        # A command past relay_command_timeout_s raises: this share is let go (the connection, and the advisory lock
        # with it) and served again after a pause, rather than the relay hanging on a stuck statement.
        conn = await asyncpg.connect(
            service_dsn(self._settings, self._service),
            timeout=10,
            command_timeout=self._settings.relay_command_timeout_s,
        )
        producer: AIOKafkaProducer | None = None
        try:
            lock = _lock_key(self._service, self._shard, self._shards)
            # Another copy of this relay may hold the share (shutting down, or started twice): wait for it.
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock):  # noqa: ASYNC110 - polls Postgres
                await asyncio.sleep(self._settings.outbox_poll_interval_s)
            self._leader = True
            await conn.add_listener(notify_channel(self._service), self._on_notify)
            producer = AIOKafkaProducer(
                **client_options(self._settings, self._service),
                enable_idempotence=True,
                acks="all",
                linger_ms=5,
                request_timeout_ms=15_000,
                client_id=relay_name(self._service, self._shard),
            )
            await producer.start()
            self._last_error = None
            self._backoff.succeeded()
            last_prune = last_measure = 0.0
            while True:
                sent = await self._publish_batch(conn, producer)
                if time.monotonic() - last_prune > _PRUNE_EVERY_S:
                    await self._prune(conn)
                    last_prune = time.monotonic()
                if time.monotonic() - last_measure > _MEASURE_EVERY_S:
                    await self._measure_backlog(conn)
                    last_measure = time.monotonic()
                if sent < self._settings.outbox_batch_size:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=self._settings.outbox_poll_interval_s)
                if conn.is_closed():
                    raise ConnectionError("relay's database connection closed")
        finally:
            self._leader = False
            if producer is not None:
                await stop_quietly(producer)
            with contextlib.suppress(Exception):
                await conn.close()

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _publish_batch(self, conn: asyncpg.Connection, producer: AIOKafkaProducer) -> int:
        rows = await conn.fetch(
            f"SELECT seq, topic, key, payload FROM {self._service}.outbox"
            " WHERE sent_at IS NULL AND key_hash % $1 = $2 ORDER BY seq LIMIT $3",
            self._shards,
            self._shard,
            self._settings.outbox_batch_size,
        )
        if not rows:
            return 0
        deliveries = [
            await producer.send(
                row["topic"], value=bytes(row["payload"]), key=row["key"].encode(), headers=[CONTENT_TYPE]
            )
            for row in rows
        ]
        results = await asyncio.gather(*deliveries, return_exceptions=True)
        acked: list[int] = []
        failure: BaseException | None = None
        for row, result in zip(rows, results, strict=True):
            if isinstance(result, BaseException):
                failure = result
                break
            acked.append(row["seq"])
        if acked:
            await conn.execute(
                f"UPDATE {self._service}.outbox SET sent_at = now() WHERE seq = ANY($1::bigint[])", acked
            )
            self._published += len(acked)
            inc_counter(
                "strata_outbox_published_total",
                "Outbox events published to Kafka and marked sent.",
                {"service": self._service},
                len(acked),
            )
        if failure is not None:
            raise failure
        return len(rows)

    async def _measure_backlog(self, conn: asyncpg.Connection) -> None:
        row = await conn.fetchrow(
            "SELECT count(*) AS rows, coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS age"
            f" FROM {self._service}.outbox WHERE sent_at IS NULL AND key_hash % $1 = $2",
            self._shards,
            self._shard,
        )
        tags = {"service": self._service, "shard": str(self._shard)}
        if row is not None:
            set_gauge("strata_outbox_backlog_rows", "Unsent outbox rows in a relay's share.", row["rows"], tags)
            set_gauge(
                "strata_outbox_oldest_age_seconds", "Age of the oldest unsent outbox row in a share.", row["age"], tags
            )

    async def _prune(self, conn: asyncpg.Connection) -> None:
        await prune_sent(
            conn, self._service, self._shard, self._shards, older_than_s=self._settings.outbox_retention_hours * 3600
        )


async def prune_sent(
    conn: asyncpg.Connection, service: str, shard: int, shards: int, *, older_than_s: float, limit: int = 10_000
) -> int:
    """Delete up to ``limit`` rows of one share that were sent more than ``older_than_s`` ago; return how many.

    Unsent rows are never pruned, however old.
    """
    service = check_service_name(service)
    status = await conn.execute(
        f"DELETE FROM {service}.outbox WHERE seq IN ("
        f" SELECT seq FROM {service}.outbox"
        "  WHERE sent_at < now() - make_interval(secs => $1) AND key_hash % $2 = $3 LIMIT $4)",
        older_than_s,
        shards,
        shard,
        limit,
    )
    return int(status.split()[-1])


_RemoteRelay = ray.remote(OutboxRelay)


def ensure_relays(service: str, shards: int) -> list[ActorHandle[Any]]:
    """The relay actors of ``service``, created (detached, restarted by Ray) where missing. Idempotent."""
    return [
        ensure_detached(_RemoteRelay, relay_name(service, shard), service, shard, shards) for shard in range(shards)
    ]
