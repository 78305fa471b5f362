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
from strata.contracts import DataClient
from strata.schemas import CollectionCreate, DataCaller, IfMatch, ItemCreate, ItemReplace, service_spec
from strata.schemas.events import COLLECTION_CREATED, ITEM_CREATED, decode
from tests.conftest import System
from tests.integration.eventing import admin_fetch, admin_value, eventually, read_topic

(AUDIT,) = service_spec("audit").consumer_groups

pytestmark = pytest.mark.integration

TOPIC = ITEM_CREATED.topic  # every data event's: strata.data.collection.v1, keyed by the collection


async def _write_for(seconds: float, owner: str, keys: int = 8) -> tuple[int, list[str]]:
    """Create ``keys`` collections of one item each, then replace the items round-robin for ``seconds``.

    One collection per item, so each Kafka key carries one item's updates (and its collection's creation) and the
    per-key order checked below is that item's version order. Returns the writes made (each one event) and the keys.
    """
    data = DataClient()
    caller = DataCaller(user_id=owner)
    collections = [
        (await data.create_collection(caller, CollectionCreate(name=f"counter {k}"))).collection for k in range(keys)
    ]
    items = [
        (await data.create_item(caller, c.id, ItemCreate(title="counter", attributes={"n": 0}))).item
        for c in collections
    ]
    writes = 2 * keys
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
        replace = ItemReplace(title="counter", attributes={"n": n})
        items = list(
            await asyncio.gather(
                *(
                    data.replace_item(
                        caller, item.collection_id, item.id, replace, if_match=IfMatch(versions=(item.version,))
                    )
                    for item in items
                )
            )
        )
        writes += keys
        await asyncio.sleep(0.1)
    return writes, [c.id for c in collections]


async def _outbox_ids(system: System, keys: list[str]) -> dict[str, Any]:
    rows = await admin_fetch(
        system, "SELECT id::text AS id, sent_at FROM data.outbox WHERE key = ANY($1::text[]) ORDER BY seq", keys
    )
    return {row["id"]: row["sent_at"] for row in rows}


async def _all_delivered(system: System, owner: str, written: tuple[int, list[str]]) -> None:
    """Wait until every event of ``owner``'s collections was sent and audited, then check the topic and the log."""
    expected, collection_ids = written

    async def sent() -> bool:
        ids = await _outbox_ids(system, collection_ids)
        return len(ids) == expected and all(sent_at is not None for sent_at in ids.values())

    await eventually(sent, timeout=120, what=f"{expected} outbox rows of {owner} sent")
    ids = set(await _outbox_ids(system, collection_ids))

    async def audited() -> bool:
        count = await admin_value(system, "SELECT count(*) FROM audit.log WHERE actor = $1", owner)
        return bool(count == expected)

    await eventually(audited, timeout=120, what=f"{expected} audit rows of {owner}")
    rows = await admin_fetch(system, "SELECT event_id::text AS id FROM audit.log WHERE actor = $1", owner)
    assert {r["id"] for r in rows} == ids, "the audit log holds each event exactly once"

    keys = {key.encode() for key in collection_ids}
    # Only this test's aggregates: other tests put their own (even poison) messages on the topic.
    records = [r for r in await read_topic(system, TOPIC) if r.key in keys]
    on_topic = [decode(r.value or b"") for r in records]
    assert {e.id for e in on_topic} == ids, "every committed event is on its topic"
    # Duplicates (redelivery after a failure) carry the same id. In first-seen order, each key (collection) starts
    # with its creation, then its item's versions rise: 1 (created), 2, 3, ... with none missing or repeated.
    sequences: dict[str, list[tuple[str, int]]] = defaultdict(list)
    seen: set[str] = set()
    for record, event in zip(records, on_topic, strict=True):
        assert record.key == event.partitionkey.encode()
        if event.id not in seen:
            seen.add(event.id)
            sequences[event.partitionkey].append((event.type, int(event.data["version"])))
    assert set(sequences) == set(collection_ids)
    for key, sequence in sequences.items():
        assert sequence[0] == (COLLECTION_CREATED.type, 1), f"{key}: its collection's creation is not first"
        versions = [version for _, version in sequence[1:]]
        assert versions == list(range(1, len(sequence))), f"order broken for {key}: {versions}"


async def test_kafka_down_for_30s_loses_nothing_and_keeps_order(system: System, ray_driver: None) -> None:
    owner = str(uuid.uuid4())
    writer = asyncio.create_task(_write_for(40, owner))
    await asyncio.sleep(3)
    await asyncio.to_thread(stop_component, system.settings, "kafka")
    try:
        await asyncio.sleep(30)
        backlog = await admin_value(system, "SELECT count(*) FROM data.outbox WHERE sent_at IS NULL")
        assert backlog > 0, "with Kafka down, events wait in the outbox"
    finally:
        await asyncio.to_thread(start_component, system.settings, "kafka")
    written = await writer
    await _all_delivered(system, owner, written)


async def test_a_relay_killed_mid_batch_loses_nothing(system: System, ray_driver: None) -> None:
    owner = str(uuid.uuid4())
    relays = [ray.get_actor(relay_name("data", shard), namespace="strata") for shard in range(2)]
    before = [(await relay.stats.remote())["pid"] for relay in relays]
    writer = asyncio.create_task(_write_for(8, owner))
    await asyncio.sleep(2)
    for pid in before:
        os.kill(pid, signal.SIGKILL)
    written = await writer
    await _all_delivered(system, owner, written)
    after = [(await relay.stats.remote())["pid"] for relay in relays]
    assert not set(before) & set(after), "Ray restarted both relays"


async def test_a_consumer_killed_resumes_from_its_committed_offset(system: System, ray_driver: None) -> None:
    owner = str(uuid.uuid4())
    runner = ray.get_actor(consumer_name(AUDIT.group, 0), namespace="strata")
    pid = (await runner.stats.remote())["pid"]
    writer = asyncio.create_task(_write_for(8, owner))
    await asyncio.sleep(3)
    os.kill(pid, signal.SIGKILL)
    written = await writer
    await _all_delivered(system, owner, written)
    stats = await runner.stats.remote()
    assert stats["pid"] != pid and stats["running"]

    async def no_lag() -> bool:
        lag = await consumer_group_lag(system.runtime.settings, AUDIT.group, list(AUDIT.topics))
        return lag["total"] == 0

    await eventually(no_lag, what="the audit group's lag to return to 0")
