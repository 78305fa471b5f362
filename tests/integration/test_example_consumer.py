"""The standalone example consumer (examples/consume_events.py) reads strata's real topics, as an external
system would: valid events printed, the test's own poison messages counted as invalid."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from strata.contracts import DataClient
from strata.schemas import CollectionCreate, DataCaller, ItemCreate
from strata.schemas.events import COLLECTION_CREATED, ITEM_CREATED
from tests.conftest import System
from tests.integration.eventing import admin_value, eventually

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "consume_events.py"
STRATA = str(Path(sys.executable).with_name("strata"))


async def test_example_consumer_reads_and_validates_strata_events(system: System, ray_driver: None) -> None:
    """It connects as a read-only principal made by `strata kafka-user add`, with its own group name."""
    reader = f"example-{uuid.uuid4().hex[:6]}"
    made = await asyncio.to_thread(
        subprocess.run,
        [STRATA, "kafka-user", "add", reader, "--read", "strata.data.*", "--json"],
        env=system.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    password = system.remember_secret(json.loads(made.stdout)["password"])
    caller, data = DataCaller(user_id=str(uuid.uuid4())), DataClient()
    collection = (await data.create_collection(caller, CollectionCreate(name="example"))).collection
    item = (await data.create_item(caller, collection.id, ItemCreate(title="x", attributes={"x": 1}))).item

    async def drained() -> bool:
        return bool(await admin_value(system, "SELECT count(*) = 0 FROM data.outbox WHERE sent_at IS NULL"))

    await eventually(drained, what="the outbox to drain")
    result = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            str(EXAMPLE),
            "--bootstrap",
            system.runtime.settings.kafka_bootstrap_servers,
            "--username",
            reader,
            "--group",
            f"{reader}.events",
            "--timeout-s",
            "20",
        ],
        env={**os.environ, "KAFKA_PASSWORD": password},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    mine = [e for e in events if e.get("key") == collection.id]  # the example prints the Kafka key
    assert mine, f"the example did not print the new collection's events; stderr: {result.stderr[-500:]}"
    # In commit order (one key), each once (the example deduplicates by id).
    assert [e["type"] for e in mine] == [COLLECTION_CREATED.type, ITEM_CREATED.type]
    assert mine[1]["data"]["item_id"] == item.id
