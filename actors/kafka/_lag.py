"""Consumer-group lag as Kafka sees it: end offsets minus the group's committed offsets."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from strata.actors.kafka._security import ADMIN, client_options
from strata.actors.kafka._stop import stop_quietly
from strata.schemas import Settings


async def partitions_of(admin: AIOKafkaAdminClient, topics: list[str]) -> list[TopicPartition]:
    """The partitions of those of ``topics`` that exist, sorted."""
    described = await admin.describe_topics(topics)
    return sorted(
        TopicPartition(t["topic"], p["partition"])
        for t in described
        if t.get("error_code", 0) == 0
        for p in t.get("partitions", [])
    )


async def consumer_group_lag(
    settings: Settings, group: str, topics: list[str], component: str = ADMIN
) -> dict[str, Any]:
    """``{"total": n, "partitions": {"topic/partition": lag}}`` for ``group`` over ``topics``.

    A partition the group never committed counts all its messages as lag
    (it starts from the earliest offset).
    """
    options = client_options(settings, component)
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=10_000)
    consumer = AIOKafkaConsumer(**options, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        partitions = await partitions_of(admin, topics)
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions) if partitions else {}
        ends = await consumer.end_offsets(partitions) if partitions else {}
        begins = await consumer.beginning_offsets(partitions) if partitions else {}
        lag: dict[str, int] = {}
        for tp in partitions:
            meta = committed.get(tp)
            position = meta.offset if meta is not None and meta.offset >= 0 else begins[tp]
            lag[f"{tp.topic}/{tp.partition}"] = max(0, ends[tp] - position)
        return {"total": sum(lag.values()), "partitions": lag}
    finally:
        await stop_quietly(consumer)
        await admin.close()
