"""Poison messages: dead-lettered with their error, the group moves on, and a replay works once fixed."""

from __future__ import annotations

import uuid
from typing import Any

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
from strata.contracts import AuthClient, UsersClient
from strata.schemas import UserNotFound, service_spec
from strata.schemas.events import ITEM_CREATED, USER_ROLES_CHANGED, ItemCreated, UserRolesChanged, encode, new_event
from tests.conftest import System
from tests.integration import units_of_work
from tests.integration.eventing import admin_value, eventually, read_topic

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
            report = await replay_dead_letters(settings, group, topics=[topic])  # a test group: not in the registry
            assert len(report.replayed) == 1 and report.refused == []

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


async def test_a_letter_naming_another_components_topic_or_forged_bytes_is_not_replayed(
    system: System, ray_driver: None
) -> None:
    """With only the data consumer's credential, letters on strata.dlq.data.v1 that name the auth topic, or the
    users topic (which the data group reads) with bytes that are not there, are refused; a true copy goes back."""
    settings = system.runtime.settings
    users_topic, auth_topic = "strata.users.user.v1", "strata.auth.account.v1"
    account = await AuthClient().register(f"dlq-{uuid.uuid4().hex[:8]}@example.com", "correct horse battery 9")

    async def users_records() -> list[Any]:
        return [r for r in await read_topic(system, users_topic) if r.value]

    async def profile() -> bool:
        try:
            await UsersClient().set_roles(account.user_id, ["admin"], actor="test")
        except UserNotFound:
            return False
        return True

    await eventually(profile, what="the new account's profile")
    genuine = (await eventually(users_records, what="an event on the users topic"))[0]
    user_id = str(uuid.uuid4())
    forged = new_event(
        USER_ROLES_CHANGED,
        UserRolesChanged(user_id=user_id, roles=["admin"], perm_version=2**31 - 1),
        subject=f"user/{user_id}",
        key=user_id,
    ).model_copy(update={"source": "strata/users"})

    def headers(topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
        values = {"strata-dlq-topic": topic, "strata-dlq-partition": str(partition), "strata-dlq-offset": str(offset)}
        return [(name, value.encode()) for name, value in values.items()]

    producer = AIOKafkaProducer(**system.kafka("data"), enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for topic, partition, offset, key, value in (
            (auth_topic, genuine.partition, genuine.offset, user_id.encode(), encode(forged)),
            (users_topic, genuine.partition, genuine.offset, user_id.encode(), encode(forged)),
            (users_topic, 0, 10**9, user_id.encode(), encode(forged)),
            (users_topic, genuine.partition, genuine.offset, genuine.key, genuine.value),
        ):
            await producer.send_and_wait(
                dlq_topic("data"), value=value, key=key, headers=headers(topic, partition, offset)
            )
    finally:
        await stop_quietly(producer)

    report = await replay_dead_letters(settings, "data")

    refused = [r for r in report.refused if r.letter.key == user_id.encode()]
    assert len(refused) == 3, report
    assert "not one its consumer group reads" in refused[0].reason
    assert any(letter.value == genuine.value for letter in report.replayed)
    for topic in (users_topic, auth_topic):
        assert all(forged.id.encode() not in (r.value or b"") for r in await read_topic(system, topic))
