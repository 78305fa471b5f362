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

from strata.serve_apps.data import DataClient
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
    owner = f"example-{uuid.uuid4().hex[:6]}"
    item = await DataClient().create_item(owner, "note", {"x": 1})

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
    mine = [e for e in events if e.get("partitionkey") == item.id or e.get("subject") == f"item/{item.id}"]
    assert mine, f"the example did not print the new item's event; stderr: {result.stderr[-500:]}"
    assert mine[0]["type"] == "strata.data.item.created.v1"
