"""One caller's schema validation cannot stall another's requests: a schema whose ``$ref``s fan out level by level is
refused when stored, a stored one costs a batch a clear 422 within its request's budget, and meanwhile another user's
reads are answered (no 5xx, within the request deadline) and the data replica stays healthy."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from tests.conftest import System
from tests.integration.accounts import Account, account, call, is_problem

pytestmark = pytest.mark.integration

BATCH = [{"title": "x", "attributes": {}}] * 100  # about 3 KB of JSON
_FAILED = {"UNHEALTHY", "DEPLOY_FAILED"}  # what Serve says of a deployment whose replica fails its health checks


def fanning_schema(levels: int) -> dict[str, Any]:
    """Each level holds the one below twice (``allOf`` of two ``$ref``s): 2**levels checks from a few hundred bytes."""
    defs: dict[str, Any] = {"l0": {"type": "object"}}
    for level in range(1, levels + 1):
        defs[f"l{level}"] = {"allOf": [{"$ref": f"#/$defs/l{level - 1}"}, {"$ref": f"#/$defs/l{level - 1}"}]}
    return {"$defs": defs, "$ref": f"#/$defs/l{levels}"}


async def _collection(client: httpx.AsyncClient, owner: Account, **body: Any) -> httpx.Response:
    return await call(client, "POST", "/v1/collections", owner, json={"name": f"c-{uuid.uuid4().hex[:8]}", **body})


def _data_service_status() -> tuple[str, dict[str, int]]:
    from ray import serve

    deployment = serve.status().applications["data"].deployments["DataService"]
    return str(deployment.status), {str(state): n for state, n in deployment.replica_states.items()}


async def _attack_while_reading(
    system: System, attacker: Account, victim: Account, collection_id: str
) -> tuple[list[httpx.Response], list[tuple[int, float]], list[tuple[str, dict[str, int]]]]:
    """Two concurrent 100-item batches into ``collection_id`` while ``victim`` lists their own collection's items
    and the data deployment's health is sampled; the batches' answers, each read's (status, seconds) and the samples."""
    async with system.async_client() as client:
        own = await _collection(client, victim)
        assert own.status_code == 201, own.text
        own_items = f"/v1/collections/{own.json()['id']}/items"
        assert (await call(client, "POST", own_items, victim, json={"title": "mine"})).status_code == 201
        reads: list[tuple[int, float]] = []
        health: list[tuple[str, dict[str, int]]] = []
        done = asyncio.Event()

        async def read_until_done() -> None:
            while not done.is_set() or len(reads) < 5:
                started = time.monotonic()
                answer = await call(client, "GET", own_items, victim)
                reads.append((answer.status_code, time.monotonic() - started))
                await asyncio.sleep(0.05)

        async def watch_health() -> None:
            while not done.is_set():
                health.append(await asyncio.to_thread(_data_service_status))
                await asyncio.sleep(0.5)

        async def batch() -> httpx.Response:
            path = f"/v1/collections/{collection_id}/items/batch"
            return await call(client, "POST", path, attacker, json={"items": BATCH}, timeout=60)

        readers = asyncio.gather(read_until_done(), watch_health())
        await asyncio.sleep(0.2)  # the reader is under way before the batches arrive
        try:
            batches = list(await asyncio.gather(batch(), batch()))
        finally:
            done.set()
            await readers
        health.append(await asyncio.to_thread(_data_service_status))
        return batches, reads, health


def _report(label: str, reads: list[tuple[int, float]]) -> None:
    times = sorted(seconds for _, seconds in reads)
    print(  # the measurement this test makes, for people; nothing below asserts on it
        f"\n{label}: {len(times)} reads of another user, statuses {sorted({s for s, _ in reads})},"
        f" median {times[len(times) // 2] * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms"
    )


async def test_a_schema_whose_references_fan_out_is_refused_when_stored(system: System, ray_driver: None) -> None:
    owner = await account(system)
    async with system.async_client() as client:
        refused = await _collection(client, owner, item_schema=fanning_schema(11))
        assert refused.status_code == 422 and is_problem(refused), refused.text
        assert refused.json()["code"] == "invalid-schema"
        assert "data_max_validation_steps" in refused.json()["detail"]
        created = await _collection(client, owner, name="c", item_schema={"type": "object"})
        changed = await call(
            client,
            "PATCH",
            f"/v1/collections/{created.json()['id']}",
            owner,
            headers={"If-Match": '"1"', "Content-Type": "application/merge-patch+json"},
            content=orjson.dumps({"item_schema": fanning_schema(11)}),
        )
        assert changed.status_code == 422 and changed.json()["code"] == "invalid-schema", changed.text


async def test_batches_against_a_stored_fanning_schema_get_a_422_and_other_users_reads_go_on(
    system: System, ray_driver: None
) -> None:
    attacker, victim = await account(system), await account(system)
    async with system.async_client() as client:
        created = await _collection(client, attacker)
        assert created.status_code == 201, created.text
        collection_id = created.json()["id"]
    # As a collection stored before the rule above: the schema goes straight into PostgreSQL.
    conn = await asyncpg.connect(system.admin_dsn)
    try:
        await conn.execute(
            "UPDATE data.collections SET item_schema = $2::jsonb, version = version + 1 WHERE id = $1::uuid",
            collection_id,
            orjson.dumps(fanning_schema(11)).decode(),
        )
    finally:
        await conn.close()

    batches, reads, health = await _attack_while_reading(system, attacker, victim, collection_id)
    _report("fan-out 11, stored before the rule", reads)
    for answer in batches:
        assert answer.status_code == 422 and is_problem(answer), answer.text
        assert answer.json()["code"] == "too-complex" and "data_max_validation_steps" in answer.json()["detail"]
        assert answer.json()["limit"] == system.settings.data_max_validation_steps
    deadline = system.settings.request_deadline_s
    assert all(status == 200 for status, _ in reads), reads
    assert all(seconds < deadline for _, seconds in reads), reads
    assert health and all(status not in _FAILED for status, _ in health), health


async def test_the_deepest_accepted_fan_out_takes_full_batches_while_other_users_read(
    system: System, ray_driver: None
) -> None:
    attacker, victim = await account(system), await account(system)
    async with system.async_client() as client:
        levels = 11
        while (created := await _collection(client, attacker, item_schema=fanning_schema(levels))).status_code == 422:
            levels -= 1  # the deepest the acceptance rule leaves
        assert created.status_code == 201 and levels >= 4, created.text

    batches, reads, health = await _attack_while_reading(system, attacker, victim, created.json()["id"])
    _report(f"fan-out {levels}, the deepest accepted", reads)
    assert [answer.status_code for answer in batches] == [200, 200], [answer.text for answer in batches]
    deadline = system.settings.request_deadline_s
    assert all(status == 200 for status, _ in reads), reads
    assert all(seconds < deadline for _, seconds in reads), reads
    assert health and all(status not in _FAILED for status, _ in health), health
