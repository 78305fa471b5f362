"""The event bus is part of the trust boundary: the embedded broker authenticates every client (SCRAM-SHA-512),
authorizes every request against the registry's ACLs, creates no topic by itself, and what does reach a topic
from the wrong producer is dead-lettered by the consumers, never applied."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import GroupAuthorizationFailedError, KafkaError, TopicAuthorizationFailedError
from aiokafka.structs import TopicPartition

from strata.actors.kafka import dlq_topic, list_dead_letters, stop_quietly
from strata.contracts import AuthClient
from strata.schemas import service_spec
from strata.schemas.events import USER_ROLES_CHANGED, UserRolesChanged, encode, new_event
from tests.conftest import System
from tests.integration.eventing import admin_value, eventually, read_topic

pytestmark = pytest.mark.integration

STRATA = str(Path(sys.executable).with_name("strata"))
USERS_TOPIC = "strata.users.user.v1"
AUTH_TOPIC = "strata.auth.account.v1"
BOUND_S = 20  # every refused connection attempt below is bounded by this, so a hang fails instead of waiting


async def _send(options: dict[str, Any], topic: str, value: bytes, key: bytes = b"k") -> None:
    producer = AIOKafkaProducer(**options, acks="all", request_timeout_ms=5000, metadata_max_age_ms=5000)
    try:
        async with asyncio.timeout(BOUND_S):
            await producer.start()
            await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await stop_quietly(producer)


async def _read_one(options: dict[str, Any], topic: str) -> None:
    """Fetch from the first partition of ``topic`` (no group); raises when the principal may not.

    A topic the principal may not even describe is absent from its metadata (aiokafka would wait for it for
    ever), so that is checked first and raised as the broker's authorization error.
    """
    consumer = AIOKafkaConsumer(**options, enable_auto_commit=False, request_timeout_ms=5000)
    try:
        async with asyncio.timeout(BOUND_S):
            await consumer.start()
            if topic not in await consumer.topics():
                raise TopicAuthorizationFailedError(topic)
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            await consumer.getmany(tp, timeout_ms=2000)
    finally:
        await stop_quietly(consumer)


def _anonymous(system: System) -> dict[str, Any]:
    return {"bootstrap_servers": system.runtime.settings.kafka_bootstrap_servers, "security_protocol": "PLAINTEXT"}


def _as(system: System, username: str, password: str) -> dict[str, Any]:
    return {
        **_anonymous(system),
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": username,
        "sasl_plain_password": password,
    }


async def test_a_client_without_credentials_can_neither_produce_nor_consume(system: System) -> None:
    with pytest.raises((KafkaError, TimeoutError)):
        await _send(_anonymous(system), USERS_TOPIC, b"{}")
    with pytest.raises((KafkaError, TimeoutError)):
        await _read_one(_anonymous(system), USERS_TOPIC)
    wrong = _as(system, "strata-users", "not-the-password")
    with pytest.raises((KafkaError, TimeoutError)):
        await _send(wrong, USERS_TOPIC, b"{}")
    # None of it reached the topic: the only messages on it are the users service's own events.
    assert all(record.value != b"{}" for record in await read_topic(system, USERS_TOPIC))


async def test_each_service_writes_only_its_own_topics(system: System) -> None:
    event = new_event(
        USER_ROLES_CHANGED,
        UserRolesChanged(user_id=str(uuid.uuid4()), roles=["admin"], perm_version=2**31 - 1),
        subject="user/x",
        key="x",
    )
    for intruder in ("auth", "data", "audit", "gateway"):
        with pytest.raises((TopicAuthorizationFailedError, KafkaError)):
            await _send(system.kafka(intruder), USERS_TOPIC, encode(event))
    with pytest.raises(TopicAuthorizationFailedError):
        await _send(system.kafka("users"), AUTH_TOPIC, b"{}")
    records = await read_topic(system, USERS_TOPIC)
    assert all(json.loads(r.value or b"{}").get("id") != event.id for r in records)


async def test_the_gateway_reads_only_its_feed_and_the_broker_creates_no_topic(system: System) -> None:
    await _read_one(system.kafka("admin"), "strata.data.collection.v1")  # there, for whoever may read it
    gateway = system.kafka("gateway")
    for topic in service_spec("gateway").reads:
        await _read_one(gateway, topic)
    with pytest.raises(TopicAuthorizationFailedError):
        await _read_one(gateway, "strata.data.collection.v1")
    missing = f"strata.data.nothing-{uuid.uuid4().hex[:6]}.v1"
    with pytest.raises(KafkaError):  # even the admin: a typo in a topic name is an error, not a new topic
        await _send(system.kafka("admin"), missing, b"x")
    assert missing not in {r.topic for r in await read_topic(system, USERS_TOPIC)}


async def test_an_event_whose_source_does_not_own_its_topic_is_dead_lettered(system: System, ray_driver: None) -> None:
    """Written with the admin's rights (the one principal that may), a roles_changed that claims to come from the
    data service is refused by the auth consumer (and the audit one): dead-lettered, not applied."""
    account = await AuthClient().register(f"forged-{uuid.uuid4().hex[:8]}@example.com", "correct horse battery 9")
    user_id = account.user_id

    async def projected() -> object:
        return await admin_value(system, "SELECT roles FROM auth.accounts WHERE user_id = $1", user_id)

    roles_before = await eventually(projected, what="the new account in auth's projection")
    forged = new_event(
        USER_ROLES_CHANGED,
        UserRolesChanged(user_id=user_id, roles=["admin"], perm_version=2**31 - 1),
        subject=f"user/{user_id}",
        key=user_id,
    ).model_copy(update={"source": "strata/data"})
    await _send(system.kafka("admin"), USERS_TOPIC, encode(forged), key=user_id.encode())

    async def dead_in(group: str) -> list[object]:
        letters = await list_dead_letters(system.runtime.settings, group, pending_only=False)
        return [letter for letter in letters if letter.key == user_id.encode()]

    for group in ("auth", "audit"):
        [letter] = await eventually(lambda group=group: dead_in(group), what=f"the forged event on {dlq_topic(group)}")
        assert letter.headers["strata-dlq-error-type"] == "ForeignEvent"  # type: ignore[attr-defined]
        assert "strata/data" in letter.headers["strata-dlq-error"]  # type: ignore[attr-defined]
    assert await projected() == roles_before  # not admin: the forged change was not applied


def _strata(system: System, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([STRATA, *args], env=system.env, capture_output=True, text=True, timeout=120, check=False)


async def test_a_kafka_user_reads_what_it_was_given_and_nothing_once_removed(system: System) -> None:
    name = f"reader-{uuid.uuid4().hex[:6]}"
    made = await asyncio.to_thread(_strata, system, "kafka-user", "add", name, "--read", "strata.data.*", "--json")
    assert made.returncode == 0, made.stderr
    answer = json.loads(made.stdout)
    reader = _as(system, name, system.remember_secret(answer["password"]))
    assert answer["topics"] == ["strata.data.*"] and answer["group_prefix"] == f"{name}."

    await _read_one(reader, "strata.data.collection.v1")
    with pytest.raises(TopicAuthorizationFailedError):
        await _read_one(reader, USERS_TOPIC)
    with pytest.raises((TopicAuthorizationFailedError, KafkaError)):
        await _send(reader, "strata.data.collection.v1", b"{}")

    for group, allowed in ((f"{name}.billing", True), ("audit", False), (f"x{name}", False), (name, False)):
        consumer = AIOKafkaConsumer(
            "strata.data.collection.v1", **reader, group_id=group, enable_auto_commit=False, request_timeout_ms=5000
        )
        try:
            async with asyncio.timeout(BOUND_S):
                if allowed:
                    await consumer.start()
                else:
                    with pytest.raises(GroupAuthorizationFailedError):
                        await consumer.start()
        finally:
            await stop_quietly(consumer)

    listed = await asyncio.to_thread(_strata, system, "kafka-user", "list", "--json")
    grants = {json.loads(line)["principal"]: json.loads(line)["grants"] for line in listed.stdout.splitlines()}
    assert grants[name] == [f"read group {name}.*", "read topic strata.data.*"]

    removed = await asyncio.to_thread(_strata, system, "kafka-user", "remove", name)
    assert removed.returncode == 0, removed.stderr
    with pytest.raises((KafkaError, TimeoutError)):
        await _read_one(reader, "strata.data.collection.v1")


def _librdkafka_read(config: dict[str, str], topic: str) -> tuple[list[bytes], str | None]:
    """Up to the first message of every partition of ``topic`` with librdkafka (confluent-kafka), bounded in time:
    ``(values, the first error)``."""
    from confluent_kafka import Consumer, KafkaException
    from confluent_kafka import KafkaError as RdKafkaError
    from confluent_kafka import TopicPartition as RdPartition

    errors: list[str] = []
    consumer = Consumer(
        {
            **config,
            "group.id": config.get("group.id", "unused"),
            "enable.auto.commit": False,
            "error_cb": lambda err: errors.append(err.str()),
        }
    )
    values: list[bytes] = []
    try:
        try:
            metadata = consumer.list_topics(topic, timeout=10)
        except KafkaException as exc:
            return [], str(exc)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            return [], str(found.error if found is not None else "no such topic in the metadata")
        partitions = found.partitions
        consumer.assign([RdPartition(topic, p, -2) for p in partitions])  # -2: the beginning
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not values and not errors:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                if message.error().code() != RdKafkaError._PARTITION_EOF:
                    errors.append(message.error().str())
                continue
            values.append(message.value())
    finally:
        consumer.close()
    return values, (errors[0] if errors else None)


async def test_another_kafka_client_reads_as_a_kafka_user_and_nothing_without_credentials(system: System) -> None:
    """librdkafka (through confluent-kafka), not aiokafka: the same principal works, and no credential gets in."""
    name = f"rdkafka-{uuid.uuid4().hex[:6]}"
    made = await asyncio.to_thread(_strata, system, "kafka-user", "add", name, "--read", USERS_TOPIC, "--json")
    assert made.returncode == 0, made.stderr
    password = system.remember_secret(json.loads(made.stdout)["password"])
    broker = {"bootstrap.servers": system.runtime.settings.kafka_bootstrap_servers}
    reader = {
        **broker,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": name,
        "sasl.password": password,
        "group.id": f"{name}.look",  # a group <its name>.<anything>: its ACL allows that
    }

    async def any_event() -> bool:
        return bool(await read_topic(system, USERS_TOPIC))

    await eventually(any_event, what="an event on the users topic")
    values, error = await asyncio.to_thread(_librdkafka_read, reader, USERS_TOPIC)
    assert error is None and values, error
    assert json.loads(values[0])["type"].startswith("strata.users.user.")  # an event of the topic, read back
    values, error = await asyncio.to_thread(_librdkafka_read, broker, USERS_TOPIC)
    assert values == [] and error is not None
    try:
        values, error = await asyncio.to_thread(_librdkafka_read, reader, AUTH_TOPIC)
        assert values == [] and error is not None and "authoriz" in error.lower()
    finally:
        await asyncio.to_thread(_strata, system, "kafka-user", "remove", name)


@pytest.mark.parametrize("name", ["strata-users", "x", "Upper"])
def test_kafka_user_refuses_names_that_are_not_its_own(system: System, name: str) -> None:
    result = _strata(system, "kafka-user", "add", name, "--read", "strata.data.*")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr


def test_kafka_user_refuses_topics_strata_does_not_have(system: System) -> None:
    result = _strata(system, "kafka-user", "add", "reader-typo", "--read", "strata.dat.item.v1")
    assert result.returncode != 0
    assert "names no strata topic" in result.stderr


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed (apt-get install kcat)")
def test_kcat_without_credentials_gets_nothing_in_or_out(system: System) -> None:
    broker = system.runtime.settings.kafka_bootstrap_servers
    produce = subprocess.run(
        ["kcat", "-b", broker, "-P", "-t", USERS_TOPIC, "-m", "5"],
        input='{"type": "strata.users.user.roles_changed.v1"}\n',
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    consume = subprocess.run(
        ["kcat", "-b", broker, "-C", "-t", USERS_TOPIC, "-o", "beginning", "-e", "-m", "5"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert produce.returncode != 0 and consume.returncode != 0
    assert consume.stdout == ""
    records = asyncio.run(read_topic(system, USERS_TOPIC))
    assert all((r.value or b"")[-20:] != b'roles_changed.v1"}' for r in records)
