"""Delivery under failure: Kafka down for 30 s, a relay killed, a consumer killed. Nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections import defaultdict
from typing import Any

import pytest
import ray

from strata.actors.consumers import consumer_name
from strata.actors.kafka import consumer_group_lag
from strata.actors.outbox import relay_name
from strata.cluster import start_component, stop_component
from strata.schemas import service_spec
from strata.schemas.events import decode, topic_name
from strata.serve_apps.data import DataClient
from tests.conftest import System
from tests.integration.eventing import admin_fetch, admin_value, eventually, read_topic

(AUDIT,) = service_spec("audit").consumer_groups

pytestmark = pytest.mark.integration

TOPIC = topic_name("data", "item")


async def _write_for(seconds: float, owner: str, keys: int = 8) -> int:
    """Create ``keys`` items, then update them round-robin for ``seconds``; returns the writes made."""
    data = DataClient()
    items = [await data.create_item(owner, "counter", {"n": 0}) for _ in range(keys)]
    writes = keys
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
        await asyncio.gather(*(data.update_item(item.id, {"n": n}) for item in items))
        writes += keys
        await asyncio.sleep(0.1)
    return writes


async def _outbox_ids(system: System, owner: str) -> dict[str, Any]:
    rows = await admin_fetch(system, "SELECT id::text AS id, payload, sent_at FROM data.outbox ORDER BY seq")
    mine = {}
    for row in rows:
        event = decode(bytes(row["payload"]))
        if event.data["owner_id"] == owner:
            mine[row["id"]] = row["sent_at"]
    return mine


async def _all_delivered(system: System, owner: str, expected: int) -> None:
    """Wait until every event of ``owner`` was sent and audited, then check the topic and the audit log."""

    async def sent() -> bool:
        ids = await _outbox_ids(system, owner)
        return len(ids) == expected and all(sent_at is not None for sent_at in ids.values())

    await eventually(sent, timeout=120, what=f"{expected} outbox rows of {owner} sent")
    ids = set(await _outbox_ids(system, owner))

    async def audited() -> bool:
        count = await admin_value(system, "SELECT count(*) FROM audit.log WHERE actor = $1", owner)
        return bool(count == expected)

    await eventually(audited, timeout=120, what=f"{expected} audit rows of {owner}")
    rows = await admin_fetch(system, "SELECT event_id::text AS id FROM audit.log WHERE actor = $1", owner)
    assert {r["id"] for r in rows} == ids, "the audit log holds each event exactly once"

    keys = {
        row["key"].encode()
        for row in await admin_fetch(system, "SELECT key FROM data.outbox WHERE id = ANY($1::uuid[])", list(ids))
    }
    # Only this test's aggregates: other tests put their own (even poison) messages on the topic.
    records = [r for r in await read_topic(system, TOPIC) if r.key in keys]
    on_topic = [decode(r.value or b"") for r in records]
    assert {e.id for e in on_topic} == ids, "every committed event is on its topic"
    # Duplicates (redelivery after a failure) carry the same id; in first-seen order, versions rise per key.
    versions: dict[str, list[int]] = defaultdict(list)
    seen: set[str] = set()
    for record, event in zip(records, on_topic, strict=True):
        assert record.key == event.partitionkey.encode()
        if event.id not in seen:
            seen.add(event.id)
            versions[event.partitionkey].append(int(event.data["version"]))
    for key, sequence in versions.items():
        assert sequence == sorted(sequence) and len(set(sequence)) == len(sequence), f"order broken for {key}"


async def test_kafka_down_for_30s_loses_nothing_and_keeps_order(system: System, ray_driver: None) -> None:
    owner = f"kafka-outage-{uuid.uuid4().hex[:6]}"
    writer = asyncio.create_task(_write_for(40, owner))
    await asyncio.sleep(3)
    await asyncio.to_thread(stop_component, system.settings, "kafka")
    try:
        await asyncio.sleep(30)
        backlog = await admin_value(system, "SELECT count(*) FROM data.outbox WHERE sent_at IS NULL")
        assert backlog > 0, "with Kafka down, events wait in the outbox"
    finally:
        await asyncio.to_thread(start_component, system.settings, "kafka")
    writes = await writer
    await _all_delivered(system, owner, writes)


async def test_a_relay_killed_mid_batch_loses_nothing(system: System, ray_driver: None) -> None:
    owner = f"relay-kill-{uuid.uuid4().hex[:6]}"
    relays = [ray.get_actor(relay_name("data", shard), namespace="strata") for shard in range(2)]
    before = [(await relay.stats.remote())["pid"] for relay in relays]
    writer = asyncio.create_task(_write_for(8, owner))
    await asyncio.sleep(2)
    for pid in before:
        os.kill(pid, signal.SIGKILL)
    writes = await writer
    await _all_delivered(system, owner, writes)
    after = [(await relay.stats.remote())["pid"] for relay in relays]
    assert not set(before) & set(after), "Ray restarted both relays"


async def test_a_consumer_killed_resumes_from_its_committed_offset(system: System, ray_driver: None) -> None:
    owner = f"consumer-kill-{uuid.uuid4().hex[:6]}"
    runner = ray.get_actor(consumer_name(AUDIT.group, 0), namespace="strata")
    pid = (await runner.stats.remote())["pid"]
    writer = asyncio.create_task(_write_for(8, owner))
    await asyncio.sleep(3)
    os.kill(pid, signal.SIGKILL)
    writes = await writer
    await _all_delivered(system, owner, writes)
    stats = await runner.stats.remote()
    assert stats["pid"] != pid and stats["running"]

    async def no_lag() -> bool:
        lag = await consumer_group_lag(system.runtime.settings, AUDIT.group, list(AUDIT.topics))
        return lag["total"] == 0

    await eventually(no_lag, what="the audit group's lag to return to 0")
