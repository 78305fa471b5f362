"""A clean restart of the embedded Kafka after principals come and go (KAFKA-20774).

Kafka 4.1 to 4.4 rebuild the SCRAM credentials from the metadata log when they start, and lose every one of them
when a removal record is met first in the hash order of the names. ``strata kafka-user remove`` writes no removal, a
broker that lost them says so at once instead of after the whole start timeout, and ``strata kafka-user repair``
brings them back. Each test restarts the session's Kafka alone (as ``test_kafka.py`` does) and leaves it running.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr

from strata.actors.kafka import ADMIN, KafkaAdmin, kafka_refused_credentials
from strata.cluster import start_component, stop_component
from strata.cluster._cli_kafka import repair_kafka
from strata.cluster._component import quiet, running
from strata.cluster._components import wait_for_kafka
from strata.cluster._errors import StartupError
from strata.cluster._kafka import EmbeddedKafka, java_hashmap_order, lost_at_start, trailing_removals
from strata.cluster._runtime import kafka_broker
from strata.cluster._state import State
from strata.schemas import REGISTRY, Settings
from tests.conftest import System

pytestmark = pytest.mark.integration

STRATA = str(Path(sys.executable).with_name("strata"))
READY_S = 120.0
_SCRAM_SHA_512 = 2


COMMAND_GUARD_S = 600
"""A hang guard, not a promise: `strata kafka-user repair` stops and starts the broker's JVM twice. The whole
lock-out test, four JVM starts, took 69-81 s on a quiet machine and 249 s at a load average of 12; a 300 s guard on
the repair alone killed it mid-start in a loaded full run, and the session's Kafka with it."""


def _strata(system: System, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [STRATA, *args], env=system.env, capture_output=True, text=True, timeout=COMMAND_GUARD_S, check=False
    )


def _broker(system: System) -> EmbeddedKafka:
    return kafka_broker(system.settings, State.load(system.settings.data_dir.resolve()), create=False)


def _as(settings: Settings, username: str, password: str) -> Settings:
    return settings.model_copy(update={"kafka_username": username, "kafka_password": SecretStr(password)})


async def _refused(system: System) -> dict[str, str]:
    """Every strata principal the broker refuses, with its answer (empty: all of them log in)."""
    settings = system.runtime.settings
    refused: dict[str, str] = {}
    for username, password in _broker(system).own_credentials():
        if (answer := await kafka_refused_credentials(_as(settings, username, password), ADMIN)) is not None:
            refused[username] = answer
    for spec in REGISTRY:
        if (answer := await kafka_refused_credentials(settings, spec.name)) is not None:
            refused[spec.name] = answer
    return refused


async def _first_bucket_name(system: System, *, also: tuple[str, ...] = ()) -> str:
    """A principal name that the broker's start meets first among every SCRAM name of its metadata log (and
    ``also``): the one whose removal record locks everyone out on Kafka 4.1.1. The issue's ``analytics`` is such a
    name on a fresh data dir; in the session's, other tests have added names.

    A new name when one can be first (it needs the first hash bucket, and no name put before it there); else the
    name that is first already, one of an earlier test's readers (strata's own names sit in later buckets).
    """
    names = [name for name, _ in await asyncio.to_thread(_broker(system).scram_history)] + list(also)
    prefix = f"first-bucket-{uuid.uuid4().hex[:6]}"
    for n in range(2_000):
        candidate = f"{prefix}-{n}"
        if java_hashmap_order([*names, candidate])[0] == candidate:
            return candidate
    first = java_hashmap_order(names)[0]
    assert not first.startswith("strata"), first
    return first


async def _restart_kafka(system: System) -> None:
    await asyncio.to_thread(stop_component, system.settings, "kafka")
    await asyncio.to_thread(start_component, system.settings, "kafka")


async def test_adding_and_removing_a_first_bucket_principal_keeps_every_principal_across_a_restart(
    system: System,
) -> None:
    broker = _broker(system)
    name = await _first_bucket_name(system)
    before = await asyncio.to_thread(broker.scram_history)
    # With a deletion, as `remove` wrote before, this name would lose every credential at the next start.
    assert lost_at_start([*before, (name, False), (name, True)])

    made = await asyncio.to_thread(_strata, system, "kafka-user", "add", name, "--read", "strata.*", "--json")
    assert made.returncode == 0, made.stderr
    password = system.remember_secret(json.loads(made.stdout)["password"])
    as_reader = _as(system.runtime.settings, name, password)
    assert await kafka_refused_credentials(as_reader, ADMIN) is None

    removed = await asyncio.to_thread(_strata, system, "kafka-user", "remove", name)
    assert removed.returncode == 0, removed.stderr
    assert f"removed Kafka principal {name}" in removed.stdout
    # Removing still means the principal cannot log in: its password was overwritten, and it holds no ACL.
    assert await kafka_refused_credentials(as_reader, ADMIN) is not None
    history = await asyncio.to_thread(broker.scram_history)
    assert history[-1] == (name, False)  # an upsert, no removal record
    assert name not in trailing_removals(history) and not lost_at_start(history)

    await _restart_kafka(system)
    started = time.monotonic()
    await asyncio.to_thread(wait_for_kafka, system.runtime.settings, READY_S, broker)
    assert time.monotonic() - started < READY_S
    assert await _refused(system) == {}
    assert await kafka_refused_credentials(as_reader, ADMIN) is not None
    gone = await asyncio.to_thread(_strata, system, "kafka-user", "list", "--json")
    assert name not in gone.stdout


async def test_a_data_dir_locked_out_by_an_old_removal_is_detected_at_once_and_repaired(system: System) -> None:
    broker = _broker(system)
    settings = system.runtime.settings
    keeper, keeper_password = f"keeper-{uuid.uuid4().hex[:6]}", system.remember_secret(uuid.uuid4().hex)
    name = await _first_bucket_name(system, also=(keeper,))
    async with KafkaAdmin(settings) as admin:
        await admin.upsert_user(keeper, keeper_password)
        await admin.upsert_user(name, system.remember_secret(uuid.uuid4().hex))
        # The old `strata kafka-user remove`: a SCRAM credential deletion, the record that triggers KAFKA-20774.
        await admin._alter_users([(name, _SCRAM_SHA_512, {})], [])
    history = await asyncio.to_thread(broker.scram_history)
    assert history[-1] == (name, True) and lost_at_start(history)

    try:
        await _restart_kafka(system)
        started = time.monotonic()
        with pytest.raises(StartupError) as refused:
            await asyncio.to_thread(wait_for_kafka, settings, READY_S, broker)
        waited = time.monotonic() - started
        message = str(refused.value)
        assert "KAFKA-20774" in message and name in message and "`strata kafka-user repair`" in message, message
        assert waited < 60, f"the lock-out took {waited:.0f}s to report"
        assert set(await _refused(system)) >= {"strata-admin", "strata-broker", *(spec.name for spec in REGISTRY)}

        repaired = await asyncio.to_thread(_strata, system, "kafka-user", "repair")
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr
        assert "one-off repair listener on 127.0.0.1:" in repaired.stdout
        assert f"overwrote the removed credentials of {name}" in repaired.stdout
        for _, password in broker.own_credentials():
            assert password not in repaired.stdout + repaired.stderr
    finally:
        if await kafka_refused_credentials(settings, ADMIN) is not None:
            await asyncio.to_thread(repair_kafka, system.settings, quiet)  # leave the session's Kafka usable

    state = State.load(system.settings.data_dir.resolve())
    assert running(state.components.get("kafka"))
    assert "REPAIR" not in broker.properties_file.read_text()
    assert await _refused(system) == {}
    # A principal of `kafka-user add` keeps its password: the log rebuilds it once no removal comes first.
    assert await kafka_refused_credentials(_as(settings, keeper, keeper_password), ADMIN) is None
    assert not lost_at_start(await asyncio.to_thread(broker.scram_history))

    # And it stays repaired across the next restart.
    await _restart_kafka(system)
    await asyncio.to_thread(wait_for_kafka, settings, READY_S, broker)
    assert await _refused(system) == {}
    async with KafkaAdmin(settings) as admin:
        await admin.retire_user(keeper)
