"""Helpers for the event-backbone tests: read a topic, poll a condition, query as admin."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

from strata.actors.kafka import stop_quietly
from strata.actors.kafka._lag import partitions_of
from tests.conftest import System


async def read_topic(system: System, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every message on ``topic`` now, partition by partition, in offset order."""
    admin = AIOKafkaAdminClient(**system.kafka())
    await admin.start()
    try:
        partitions = await partitions_of(admin, [topic])
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(**system.kafka(), enable_auto_commit=False)
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=2000)
                records += [r for r in batch.get(tp, []) if r.offset < ends[tp]]
    finally:
        await stop_quietly(consumer)
    return records


async def eventually(
    check: Callable[[], Awaitable[Any]], *, timeout: float = 90.0, interval: float = 0.5, what: str = "condition"
) -> Any:
    """Await ``check()`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


async def admin_fetch(system: System, query: str, *args: Any) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(system.admin_dsn)
    try:
        return [dict(r) for r in await conn.fetch(query, *args)]
    finally:
        await conn.close()


async def admin_value(system: System, query: str, *args: Any) -> Any:
    conn = await asyncpg.connect(system.admin_dsn)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()
