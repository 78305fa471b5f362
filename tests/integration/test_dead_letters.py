"""Poison messages: dead-lettered with their error, the group moves on, and a replay works once fixed."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
import ray
from aiokafka import AIOKafkaProducer

from strata.actors.consumers import consumer_name, ensure_consumers
from strata.actors.kafka import (
    Acl,
    KafkaAdmin,
    consumer_group_lag,
    dlq_topic,
    ensure_topics,
    list_dead_letters,
    replay_dead_letters,
    stop_quietly,
)
from strata.actors.postgres import service_dsn
from strata.schemas import service_spec
from strata.schemas.events import ITEM_CREATED, ItemCreated, encode, new_event
from tests.conftest import System
from tests.integration import units_of_work
from tests.integration.eventing import admin_value, eventually

(AUDIT,) = service_spec("audit").consumer_groups

pytestmark = pytest.mark.integration

ray.cloudpickle.register_pickle_by_value(units_of_work)


async def _produce(system: System, topic: str, key: bytes, value: bytes) -> None:
    producer = AIOKafkaProducer(**system.kafka(), enable_idempotence=True, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await stop_quietly(producer)


async def _lag(system: System, group: str, topics: list[str]) -> int:
    lag = await consumer_group_lag(system.runtime.settings, group, topics)
    return int(lag["total"])


async def test_an_unparseable_message_is_dead_lettered_and_the_audit_group_moves_on(
    system: System, ray_driver: None
) -> None:
    key = f"garbage-{uuid.uuid4().hex[:6]}".encode()  # unique: it finds this test's letter among all of them
    await _produce(system, ITEM_CREATED.topic, key, b"{not json at all")

    async def dead_lettered() -> list[object]:
        letters = await list_dead_letters(system.runtime.settings, AUDIT.group, pending_only=False)
        return [letter for letter in letters if letter.key == key]

    [letter] = await eventually(dead_lettered, what="the garbage message on the audit DLQ")
    assert letter.value == b"{not json at all"  # the original message, unchanged
    assert letter.headers["strata-dlq-error-type"] == "ValidationError"
    assert letter.headers["strata-dlq-topic"] == "strata.data.collection.v1"
    assert letter.headers["strata-dlq-group"] == AUDIT.group

    async def caught_up() -> bool:
        return await _lag(system, AUDIT.group, list(AUDIT.topics)) == 0

    await eventually(caught_up, what="the audit group's lag to return to 0")


async def test_a_poison_event_goes_to_the_dlq_and_replays_once_its_cause_is_fixed(
    system: System, ray_driver: None
) -> None:
    settings = system.runtime.settings
    group = f"test-fk-{uuid.uuid4().hex[:6]}"
    topic = f"strata.data.{group}.v1"  # a private topic the data service would own
    await ensure_topics(settings, [topic, dlq_topic(group)])
    # The audit principal may use only its own group and topics: this test's group is granted for its duration.
    grants = {
        Acl("strata-audit", "group", group, "read"),
        Acl("strata-audit", "topic", topic, "read"),
        Acl("strata-audit", "topic", dlq_topic(group), "write"),
    }
    async with KafkaAdmin(settings) as kafka_admin:
        await kafka_admin.create_acls(grants)
    audit = await asyncpg.connect(service_dsn(settings, "audit"))
    try:
        await audit.execute("CREATE TABLE IF NOT EXISTS audit.t_parent (item_id text PRIMARY KEY)")
        await audit.execute(
            "CREATE TABLE IF NOT EXISTS audit.t_child"
            " (event_id uuid PRIMARY KEY, item_id text NOT NULL REFERENCES audit.t_parent)"
        )
        [runner] = ensure_consumers(group, [topic], units_of_work.child_of_parent, "audit", members=1)
        try:
            collection_id, item_id = str(uuid.uuid4()), str(uuid.uuid4())
            event = new_event(
                ITEM_CREATED,
                ItemCreated(collection_id=collection_id, item_id=item_id, version=1),
                subject=f"collection/{collection_id}/item/{item_id}",
                key=collection_id,
            )
            await _produce(system, topic, collection_id.encode(), encode(event))

            async def dead() -> list[object]:
                return list(await list_dead_letters(settings, group))

            [letter] = await eventually(dead, what="the poison event on the group's DLQ")
            assert letter.headers["strata-dlq-error-type"] == "IntegrityError"
            assert "foreign key" in letter.headers["strata-dlq-error"]
            assert letter.headers["strata-dlq-attempts"] == str(settings.consumer_max_attempts)

            async def caught_up() -> bool:
                return await _lag(system, group, [topic]) == 0

            await eventually(caught_up, what="the group to move past the poison event")

            await audit.execute("INSERT INTO audit.t_parent (item_id) VALUES ($1)", item_id)  # the fix
            replayed = await replay_dead_letters(settings, group)
            assert len(replayed) == 1

            async def applied() -> bool:
                count = await admin_value(system, "SELECT count(*) FROM audit.t_child WHERE event_id = $1", event.id)
                return bool(count == 1)

            await eventually(applied, what="the replayed event's effect")
            assert await list_dead_letters(settings, group) == []
            assert (await runner.stats.remote())["dead_lettered"] == 1
        finally:
            ray.kill(ray.get_actor(consumer_name(group, 0), namespace="strata"), no_restart=True)
    finally:
        await audit.close()
        async with KafkaAdmin(settings) as kafka_admin:
            await kafka_admin.delete_acls(grants)
