"""A consumer group member as a Ray actor: consume, apply once, commit after the effect, dead-letter poison.

For each message, in partition order:

1. parse and validate it as a strata CloudEvent; unparseable or
   schema-invalid messages go straight to the group's dead-letter topic;
2. apply the group's handler inside one PostgreSQL transaction that also
   records ``(group, event id)`` in the consumer's inbox table: a redelivered
   event finds its id there and has no second effect;
3. a handler failure is retried with doubling pauses; after
   ``consumer_max_attempts`` the message is dead-lettered and the group moves
   on. PostgreSQL being unreachable is not the message's fault: it is retried
   until the database returns, without counting attempts. A command that times
   out (``db_command_timeout_s``) is the message's fault when the database
   answers a trivial query right after: an effect that times out every time
   counts its attempts and reaches the dead-letter topic, instead of being
   retried forever (:func:`apply_with_retries`);
4. offsets are committed after the batch's effects (and on partition
   revocation), so a consumer killed at any point resumes from the last
   committed offset and the inbox absorbs what it replays.

The runner is named ``strata-consumer-<group>-<n>``, detached and restarted by
Ray; members of one group share its partitions through Kafka's group protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import ray
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.structs import ConsumerRecord, TopicPartition
from ray.actor import ActorHandle

from strata.actors import Backoff, keep_running
from strata.actors._detached import ensure_detached
from strata.actors._metrics import set_gauge
from strata.actors.kafka import client_options, dead_letter_headers, dlq_topic, stop_quietly
from strata.actors.postgres import (
    AsyncpgPool,
    CommandTimedOut,
    DatabaseUnavailable,
    check_service_name,
    service_dsn,
)
from strata.schemas import Settings
from strata.schemas.events import CloudEvent, check_provenance, decode

logger = logging.getLogger(__name__)

Handler = Callable[[asyncpg.Connection, CloudEvent[Any]], Awaitable[None]]
"""``async def handler(conn, event)``: the group's effect, inside the transaction that records the event id."""

_MAX_BACKOFF_S = 5.0
_MEASURE_EVERY_S = 5.0
"""How often a member records its lag as a metric, seconds."""


def consumer_name(group: str, index: int) -> str:
    return f"strata-consumer-{group}-{index}"


@dataclass(frozen=True, slots=True)
class GaveUp:
    """The effect failed ``attempts`` times, the last with ``error``: the message goes to the dead-letter topic."""

    error: BaseException
    attempts: int


async def apply_with_retries(
    apply: Callable[[], Awaitable[bool]],
    *,
    max_attempts: int,
    first_pause_s: float,
    database_answers: Callable[[], Awaitable[bool]],
    on_database_unavailable: Callable[[DatabaseUnavailable], None] = lambda exc: None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> bool | GaveUp:
    """Run ``apply`` (one transaction of the effect) until it succeeds; its result, or :class:`GaveUp`.

    Each failure counts as an attempt, with doubling pauses from ``first_pause_s`` (at most ``_MAX_BACKOFF_S``),
    except the database being unavailable, which is waited out without counting. A timed-out command is
    :class:`DatabaseUnavailable` too, but it may be the effect's own doing (a statement that is slow every time):
    when ``database_answers()`` right after, the timeout counts as an attempt like any other failure.
    """
    attempt = 0
    pause = first_pause_s
    while True:
        try:
            return await apply()
        except DatabaseUnavailable as exc:
            if not (isinstance(exc, CommandTimedOut) and await database_answers()):
                # Not the message's fault: wait for the database, do not count it as an attempt.
                on_database_unavailable(exc)
                await sleep(min(pause, _MAX_BACKOFF_S))
                continue
            error: BaseException = exc
        except Exception as exc:  # noqa: BLE001 - the handler's failure: retried, then dead-lettered
            error = exc
        attempt += 1
        if attempt >= max_attempts:
            return GaveUp(error, attempt)
        await sleep(min(pause, _MAX_BACKOFF_S))
        pause *= 2


async def apply_once(
    conn: asyncpg.Connection, schema: str, group: str, handler: Handler, event: CloudEvent[Any]
) -> bool:
    """Run ``handler`` unless ``group`` already applied ``event``; ``True`` if it ran. Call inside a transaction."""
    first = await conn.fetchval(
        f"INSERT INTO {schema}.inbox (consumer_group, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
        group,
        event.id,
    )
    if not first:
        return False
    await handler(conn, event)
    return True


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: ConsumerRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._runner.commit_processed()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        return None


class ConsumerRunner:
    """One member of consumer group ``group`` writing its effects to schema ``service``."""

    async def __init__(  # type: ignore[misc]  # Ray awaits an async constructor
        self, group: str, topics: list[str], handler: Handler, service: str
    ) -> None:
        self._service = check_service_name(service)
        self._settings = Settings.of_service(service)
        self._group = group
        self._topics = topics
        self._handler = handler
        self._db = AsyncpgPool(
            service_dsn(self._settings, service),
            max_size=2,
            command_timeout=self._settings.db_command_timeout_s,
            application_name=f"strata-consumer-{group}",
            schema=service,
        )
        self._processed: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._applied = 0
        self._duplicates = 0
        self._dead_lettered = 0
        self._last_error: str | None = None
        self._backoff = Backoff(first=0.2, cap=_MAX_BACKOFF_S)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"consumer-{group}")

    async def stats(self) -> dict[str, Any]:
        return {
            "group": self._group,
            "applied": self._applied,
            "duplicates": self._duplicates,
            "dead_lettered": self._dead_lettered,
            "last_error": self._last_error,
            "assigned": sorted(
                f"{tp.topic}/{tp.partition}" for tp in (self._consumer.assignment() if self._consumer else ())
            ),
            "running": not self._task.done(),
            "pid": os.getpid(),
        }

    async def commit_processed(self) -> None:
        if self._consumer is None or not self._processed:
            return
        offsets, self._processed = self._processed, {}
        with contextlib.suppress(Exception):  # a revoked partition's commit may be refused; the inbox absorbs replays
            await self._consumer.commit(offsets)

    async def _record_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Messages behind the log end, per topic of this member's assignment (a Prometheus gauge)."""
        lag: dict[str, int] = {}
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            try:
                position = await asyncio.wait_for(consumer.position(tp), timeout=1.0)
            except Exception:  # noqa: BLE001 - no position yet (or a rebalance): measured on a later poll
                continue
            lag[tp.topic] = lag.get(tp.topic, 0) + max(0, highwater - position)
        for topic, behind in lag.items():
            set_gauge(
                "strata_consumer_lag_messages",
                "Messages a consumer group member has yet to apply, per topic of its assignment.",
                behind,
                {"group": self._group, "topic": topic},
            )

    async def _run(self) -> None:
        await keep_running(self._consume, self._backoff, self._failed)

    def _failed(self, exc: BaseException, pause: float) -> None:
        self._last_error = f"{type(exc).__name__}: {exc}"[:500]
        logger.warning("consumer %s: %s; restarting in %.1fs", self._group, self._last_error, pause)

    async def _consume(self) -> None:
        await self._db.start()
        options = client_options(self._settings, self._service)
        consumer = AIOKafkaConsumer(
            **options,
            group_id=self._group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=200,
            client_id=f"strata-{self._group}",
        )
        producer = AIOKafkaProducer(**options, enable_idempotence=True, acks="all")
        consumer.subscribe(self._topics, listener=_CommitOnRevoke(self))
        try:
            await consumer.start()
            await producer.start()
            self._consumer = consumer
            self._last_error = None
            self._backoff.succeeded()
            last_measure = 0.0
            while True:
                batches = await consumer.getmany(timeout_ms=1000)
                for tp, messages in batches.items():
                    for message in messages:
                        await self._handle(message, producer)
                        self._processed[tp] = message.offset + 1
                await self.commit_processed()
                if time.monotonic() - last_measure > _MEASURE_EVERY_S:
                    await self._record_lag(consumer)
                    last_measure = time.monotonic()
        finally:
            self._consumer = None
            self._processed = {}
            await stop_quietly(producer)
            await stop_quietly(consumer)

    async def _handle(self, message: ConsumerRecord[bytes, bytes], producer: AIOKafkaProducer) -> None:
        try:
            event = decode(message.value or b"")
            check_provenance(message.topic, event)  # what the owner of the topic did not write is not applied
        except ValueError as exc:
            await self._dead_letter(message, producer, exc, attempts=1)
            return

        def unavailable(exc: DatabaseUnavailable) -> None:
            self._last_error = f"database unavailable: {exc}"

        outcome = await apply_with_retries(
            lambda: self._db.run_in_transaction(apply_once, self._service, self._group, self._handler, event),
            max_attempts=self._settings.consumer_max_attempts,
            first_pause_s=self._settings.consumer_retry_backoff_s,
            database_answers=self._database_answers,
            on_database_unavailable=unavailable,
        )
        if isinstance(outcome, GaveUp):
            await self._dead_letter(message, producer, outcome.error, attempts=outcome.attempts)
            return
        self._last_error = None
        if outcome:
            self._applied += 1
        else:
            self._duplicates += 1

    async def _database_answers(self) -> bool:
        """Whether the database answers ``SELECT 1`` now (within the command timeout)."""
        try:
            await self._db.fetchval("SELECT 1")
        except DatabaseUnavailable:
            return False
        return True

    async def _dead_letter(
        self, message: ConsumerRecord[bytes, bytes], producer: AIOKafkaProducer, error: BaseException, attempts: int
    ) -> None:
        logger.warning(
            "consumer %s: %s/%d@%d goes to %s: %s",
            self._group,
            message.topic,
            message.partition,
            message.offset,
            dlq_topic(self._group),
            type(error).__name__,
        )
        await producer.send_and_wait(
            dlq_topic(self._group),
            value=message.value,
            key=message.key,
            headers=[*(message.headers or ()), *dead_letter_headers(message, self._group, error, attempts)],
        )
        self._dead_lettered += 1


_RemoteRunner = ray.remote(ConsumerRunner)


def ensure_consumers(
    group: str, topics: list[str], handler: Handler, service: str, members: int
) -> list[ActorHandle[Any]]:
    """The ``members`` runners of ``group``, created (detached, restarted by Ray) where missing. Idempotent."""
    return [
        ensure_detached(_RemoteRunner, consumer_name(group, index), group, topics, handler, service)
        for index in range(members)
    ]
