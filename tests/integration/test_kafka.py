"""The embedded Kafka is a real broker: idempotent, acks=all produce; data survives a broker restart."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.partitioner import murmur2
from aiokafka.structs import TopicPartition

from strata.actors.kafka import ensure_topics
from strata.cluster import start_component, stop_component
from tests.conftest import System

pytestmark = pytest.mark.integration


async def _produce(system: System, topic: str, key: bytes, value: bytes) -> tuple[int, int]:
    partition, offset, _ = await _produce_counting(system, topic, key, value)
    return partition, offset


async def _produce_counting(system: System, topic: str, key: bytes, value: bytes) -> tuple[int, int, int]:
    """``(partition, offset, partitions of the topic)`` of one message sent with the idempotent producer."""
    await ensure_topics(system.runtime.settings, [topic])  # the broker creates no topic by itself
    producer = AIOKafkaProducer(**system.kafka(), enable_idempotence=True, acks="all")
    await producer.start()
    try:
        metadata = await producer.send_and_wait(topic, value=value, key=key)
        partitions = await producer.partitions_for(topic)
        return metadata.partition, metadata.offset, len(partitions)
    finally:
        await producer.stop()


async def _read_all(system: System, topic: str, expected: int) -> list[tuple[bytes | None, bytes | None]]:
    consumer = AIOKafkaConsumer(
        topic,
        **system.kafka(),
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen: list[tuple[bytes | None, bytes | None]] = []
    try:
        for _ in range(30):
            batch = await consumer.getmany(timeout_ms=1000)
            seen += [(m.key, m.value) for messages in batch.values() for m in messages]
            if len(seen) >= expected:
                break
    finally:
        await consumer.stop()
    return seen


async def test_keyed_idempotent_message_is_consumed_back(system: System) -> None:
    topic = f"strata.test.{uuid.uuid4().hex[:8]}"
    partition, offset, partitions = await _produce_counting(system, topic, b"user-1", b'{"hello": "kafka"}')
    # The key chose the partition (Kafka's murmur2 partitioner, as every client computes it), and it is the first
    # message of a new topic.
    assert partition == (murmur2(b"user-1") & 0x7FFFFFFF) % partitions
    assert offset == 0
    assert await _read_all(system, topic, 1) == [(b"user-1", b'{"hello": "kafka"}')]


async def test_same_key_goes_to_the_same_partition(system: System) -> None:
    topic = f"strata.test.{uuid.uuid4().hex[:8]}"
    partitions = {(await _produce(system, topic, b"aggregate-7", f"v{i}".encode()))[0] for i in range(5)}
    assert len(partitions) == 1


async def test_a_message_produced_before_a_broker_restart_is_still_there(system: System) -> None:
    topic = f"strata.test.{uuid.uuid4().hex[:8]}"
    partition, offset = await _produce(system, topic, b"k", b"survives")
    stop_component(system.settings, "kafka")
    start_component(system.settings, "kafka")
    consumer = AIOKafkaConsumer(**system.kafka(), enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        message = await consumer.getone()
        assert (message.key, message.value, message.offset) == (b"k", b"survives", offset)
    finally:
        await consumer.stop()
