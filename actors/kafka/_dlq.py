"""Dead-letter topics: where a consumer group puts what it cannot apply, and how to replay it.

A dead letter is the original message (key and value unchanged) on
``strata.dlq.<group>.v1`` with headers saying where it came from and why it
failed (docs/events.md). Replaying sends the original message back to its
original topic; consumers deduplicate by event id, so groups that had applied
it see no second effect. Replay progress is kept as the offsets of consumer
group ``strata.dlq-replay.<group>``, so a letter is replayed once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata, TopicPartition

from strata.actors.kafka._lag import partitions_of
from strata.actors.kafka._security import ADMIN, client_options
from strata.actors.kafka._stop import stop_quietly
from strata.actors.kafka._topics import dlq_topic
from strata.schemas import Settings

H_ERROR = "strata-dlq-error"
H_ERROR_TYPE = "strata-dlq-error-type"
H_TOPIC = "strata-dlq-topic"
H_PARTITION = "strata-dlq-partition"
H_OFFSET = "strata-dlq-offset"
H_GROUP = "strata-dlq-group"
H_ATTEMPTS = "strata-dlq-attempts"
H_FAILED_AT = "strata-dlq-failed-at"


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


async def replay_dead_letters(settings: Settings, group: str) -> list[DeadLetter]:
    """Send every pending dead letter of ``group`` back to its original topic; return them.

    Replay progress is committed after the broker acknowledged the resends, so
    a replay interrupted midway resends at most what it had not committed.
    """
    letters, consumer = await _read(settings, group, pending_only=True)
    producer = AIOKafkaProducer(**client_options(settings, ADMIN), enable_idempotence=True, acks="all")
    try:
        if not letters:
            return []
        await producer.start()
        for letter in letters:
            original = letter.headers.get(H_TOPIC)
            if not original:
                continue
            headers = list(letter.original_headers) or None
            await producer.send_and_wait(original, value=letter.value, key=letter.key, headers=headers)
        last: dict[TopicPartition, OffsetAndMetadata] = {}
        for letter in letters:
            tp = TopicPartition(dlq_topic(group), letter.partition)
            last[tp] = OffsetAndMetadata(letter.offset + 1, "")
        await consumer.commit(last)
        return letters
    finally:
        await stop_quietly(producer)
        await stop_quietly(consumer)
