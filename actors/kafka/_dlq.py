"""Dead-letter topics: where a consumer group puts what it cannot apply, and how to replay it.

A dead letter is the original message (key and value unchanged) on
``strata.dlq.<group>.v1`` with headers saying where it came from and why it
failed (docs/events.md). Replaying sends the original message back to its
original topic; consumers deduplicate by event id, so groups that had applied
it see no second effect. Replay progress is kept as the offsets of consumer
group ``strata.dlq-replay.<group>``, so a letter is replayed once.

A replay publishes as the admin principal, which may write every topic, while a
dead-letter topic is written by the group's own principal: a leaked consumer
credential could write a letter whose headers name any topic. So a letter is
replayed only when both hold (:func:`replay_dead_letters`):

- its original topic is one its consumer group reads (the registry's
  :class:`~strata.schemas.ConsumerGroupSpec`): a group's letters never reach
  another component's topics;
- the original topic still holds, at the partition and offset the letter
  names, a record with the letter's key and value. What is resent is that
  record (key, value and headers), read back from the original topic, never the
  letter's copy. Writing that record took the topic's own principal (or the
  admin), so a forger who holds only a consumer credential cannot make a letter
  pass: a letter whose bytes differ, whose offset is past the log's end, or
  whose original was deleted by retention is refused (reported, and not
  replayed again).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata, TopicPartition

from strata.actors.kafka._lag import partitions_of
from strata.actors.kafka._security import ADMIN, client_options
from strata.actors.kafka._stop import stop_quietly
from strata.actors.kafka._topics import dlq_topic
from strata.schemas import Settings, consumer_groups

logger = logging.getLogger(__name__)

H_ERROR = "strata-dlq-error"
H_ERROR_TYPE = "strata-dlq-error-type"
H_TOPIC = "strata-dlq-topic"
H_PARTITION = "strata-dlq-partition"
H_OFFSET = "strata-dlq-offset"
H_GROUP = "strata-dlq-group"
H_ATTEMPTS = "strata-dlq-attempts"
H_FAILED_AT = "strata-dlq-failed-at"
_FETCH_TRIES = 5
"""Fetches of an original record before a replay gives up (a broker that answers nothing for that long)."""


def replay_group(group: str) -> str:
    return f"strata.dlq-replay.{group}"


def dead_letter_headers(
    message: ConsumerRecord[bytes, bytes], group: str, error: BaseException, attempts: int
) -> list[tuple[str, bytes]]:
    values = {
        H_ERROR: str(error)[:2000] or type(error).__name__,
        H_ERROR_TYPE: type(error).__name__,
        H_TOPIC: message.topic,
        H_PARTITION: str(message.partition),
        H_OFFSET: str(message.offset),
        H_GROUP: group,
        H_ATTEMPTS: str(attempts),
        H_FAILED_AT: datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    return [(name, value.encode()) for name, value in values.items()]


@dataclass(frozen=True)
class DeadLetter:
    """One message on a dead-letter topic."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]
    original_headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def origin(self) -> str:
        return f"{self.headers.get(H_TOPIC)}/{self.headers.get(H_PARTITION)}@{self.headers.get(H_OFFSET)}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "offset": self.offset,
            "origin": self.origin,
            "error_type": self.headers.get(H_ERROR_TYPE),
            "error": self.headers.get(H_ERROR),
            "attempts": self.headers.get(H_ATTEMPTS),
            "failed_at": self.headers.get(H_FAILED_AT),
            "key": self.key.decode(errors="replace") if self.key is not None else None,
        }


async def _read(settings: Settings, group: str, *, pending_only: bool) -> tuple[list[DeadLetter], AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(
        **client_options(settings, ADMIN),
        group_id=replay_group(group),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    admin = AIOKafkaAdminClient(**client_options(settings, ADMIN), request_timeout_ms=10_000)
    await admin.start()
    try:
        partitions = await partitions_of(admin, [dlq_topic(group)])
    finally:
        await admin.close()
    if not partitions:
        return [], consumer
    consumer.assign(partitions)
    if not pending_only:
        await consumer.seek_to_beginning(*partitions)
    ends = await consumer.end_offsets(partitions)
    letters: list[DeadLetter] = []
    for tp in partitions:
        while await consumer.position(tp) < ends[tp]:
            batch = await consumer.getmany(tp, timeout_ms=2000)
            records = batch.get(tp, [])
            if not records:
                break
            letters += [
                DeadLetter(
                    tp.partition,
                    r.offset,
                    r.key,
                    r.value,
                    {k: v.decode(errors="replace") for k, v in (r.headers or ())},
                    tuple((k, v) for k, v in (r.headers or ()) if not k.startswith("strata-dlq-")),
                )
                for r in records
                if r.offset < ends[tp]
            ]
    return letters, consumer


async def list_dead_letters(settings: Settings, group: str, *, pending_only: bool = True) -> list[DeadLetter]:
    """The dead letters of ``group``: those not replayed yet, or all of them (read as the admin principal)."""
    letters, consumer = await _read(settings, group, pending_only=pending_only)
    await stop_quietly(consumer)
    return letters


def group_topics(group: str) -> frozenset[str]:
    """The topics consumer group ``group`` reads, from the registry (none for a group strata does not run)."""
    return frozenset(topic for _, spec in consumer_groups() if spec.group == group for topic in spec.topics)


@dataclass(frozen=True)
class RefusedLetter:
    """A dead letter that was not replayed, and why."""

    letter: DeadLetter
    reason: str


@dataclass(frozen=True)
class ReplayReport:
    """What a replay did: the letters sent back to their topics, and those refused (never replayed later)."""

    replayed: list[DeadLetter] = field(default_factory=list)
    refused: list[RefusedLetter] = field(default_factory=list)


class OriginUnreadable(RuntimeError):
    """The original topic did not answer: the replay stops and commits nothing (run it again)."""


async def _original(
    consumer: AIOKafkaConsumer, letter: DeadLetter, topics: Collection[str], known: Collection[TopicPartition]
) -> ConsumerRecord[bytes, bytes] | str:
    """The record the letter says it copies, when its origin vouches for it; else why it does not."""
    topic = letter.headers.get(H_TOPIC) or ""
    if topic not in topics:
        return f"its original topic {topic!r} is not one its consumer group reads"
    try:
        partition, offset = int(letter.headers.get(H_PARTITION, "")), int(letter.headers.get(H_OFFSET, ""))
    except ValueError:
        return "its origin names no partition and offset"
    tp = TopicPartition(topic, partition)
    if tp not in known:
        return f"{topic} has no partition {partition}"
    consumer.assign([tp])
    first, end = (await consumer.beginning_offsets([tp]))[tp], (await consumer.end_offsets([tp]))[tp]
    if not first <= offset < end:
        return f"{topic}/{partition} holds no record at offset {offset} (it holds {first}..{end - 1})"
    consumer.seek(tp, offset)
    for _ in range(_FETCH_TRIES):
        records = (await consumer.getmany(tp, timeout_ms=2000)).get(tp, [])
        if records:
            record = records[0]
            if record.offset != offset:
                return f"{topic}/{partition} holds no record at offset {offset}"
            if record.key != letter.key or record.value != letter.value:
                return f"the record at {topic}/{partition}@{offset} is not the letter's: not replayed"
            return record
    raise OriginUnreadable(f"{topic}/{partition}@{offset} could not be read; nothing was replayed")


async def replay_dead_letters(settings: Settings, group: str, *, topics: Collection[str] | None = None) -> ReplayReport:
    """Send every pending dead letter of ``group`` back to its original topic, once its origin vouches for it.

    ``topics`` are the topics the group reads: the registry's by default (:func:`group_topics`; a group strata does
    not run reads none, so its letters are all refused). A letter is replayed only if its original topic is one of
    them and still holds the letter's record at the partition and offset it names; that record is resent (see the
    module docstring). Refused letters are logged and reported, and count as handled: replay progress is committed
    past them too, after the broker acknowledged the resends, so a replay interrupted midway resends at most what
    it had not committed.
    """
    allowed = group_topics(group) if topics is None else frozenset(topics)
    letters, consumer = await _read(settings, group, pending_only=True)
    origins = AIOKafkaConsumer(**client_options(settings, ADMIN), enable_auto_commit=False)
    producer = AIOKafkaProducer(**client_options(settings, ADMIN), enable_idempotence=True, acks="all")
    report = ReplayReport()
    try:
        if not letters:
            return report
        admin = AIOKafkaAdminClient(**client_options(settings, ADMIN), request_timeout_ms=10_000)
        await admin.start()
        try:
            known = set(await partitions_of(admin, sorted(allowed))) if allowed else set()
        finally:
            await admin.close()
        await origins.start()
        await producer.start()
        for letter in letters:
            original = await _original(origins, letter, allowed, known)
            if isinstance(original, str):
                logger.warning(
                    "dead letter %d@%d of group %s refused: %s", letter.partition, letter.offset, group, original
                )
                report.refused.append(RefusedLetter(letter, original))
                continue
            await producer.send_and_wait(
                original.topic, value=original.value, key=original.key, headers=list(original.headers or ()) or None
            )
            report.replayed.append(letter)
        last: dict[TopicPartition, OffsetAndMetadata] = {}
        for letter in letters:
            tp = TopicPartition(dlq_topic(group), letter.partition)
            last[tp] = OffsetAndMetadata(letter.offset + 1, "")
        await consumer.commit(last)
        return report
    finally:
        await stop_quietly(producer)
        await stop_quietly(origins)
        await stop_quietly(consumer)
