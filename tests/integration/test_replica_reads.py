"""Reads served by the streaming standby, each caller's own writes visible by their commit position (issue 12, Must
show 2, 3, 4). The primary-down case is in test_recovery.py, where the primary is killed anyway."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from strata.actors.postgres import parse_lsn
from strata.serve_apps.gateway._consistency import TokenSigner
from tests.conftest import System
from tests.integration.accounts import Account, account, call, is_problem
from tests.integration.eventing import eventually
from tests.integration.operators import operator_headers, operator_readyz
from tests.integration.standbys import (
    counted,
    counter,
    data_standby,
    on_standby,
    scans,
    standby_becomes,
    standby_dsn,
    standby_name,
)

pytestmark = pytest.mark.integration
logger = logging.getLogger(__name__)

CYCLES = 1000
"""Write-then-read cycles per mode (with the token, without it)."""
CHAINS = 5
"""Each mode's cycles run as this many chains at once, each its own account and item (a chain is sequential: a
read follows its own write): the same 1,000 cycles per mode, in about half the wall time of one chain per mode."""


async def _collection_with_items(client: httpx.AsyncClient, owner: Account, items: int) -> tuple[str, list[str]]:
    made = await call(client, "POST", "/v1/collections", owner, json={"name": f"r-{uuid.uuid4().hex[:8]}"})
    assert made.status_code == 201, made.text
    collection_id = made.json()["id"]
    batch = await call(
        client,
        "POST",
        f"/v1/collections/{collection_id}/items/batch",
        owner,
        json={"items": [{"title": f"item {n}", "attributes": {"n": n}} for n in range(items)]},
    )
    assert batch.status_code == 200, batch.text
    return collection_id, [item["id"] for item in batch.json()["items"]]


@asynccontextmanager
async def _replay_delayed(system: System, delay_ms: int) -> AsyncIterator[None]:
    """The standby applies each commit ``delay_ms`` after it was made: it is always a little behind, as under load."""
    await on_standby(system, f"ALTER SYSTEM SET recovery_min_apply_delay = '{delay_ms}ms'")
    await on_standby(system, "SELECT pg_reload_conf()")
    try:
        yield
    finally:
        await on_standby(system, "ALTER SYSTEM RESET recovery_min_apply_delay")
        await on_standby(system, "SELECT pg_reload_conf()")


@asynccontextmanager
async def _replay_paused(system: System) -> AsyncIterator[None]:
    await on_standby(system, "SELECT pg_wal_replay_pause()")
    try:
        yield
    finally:
        await on_standby(system, "SELECT pg_wal_replay_resume()")


async def _in_rotation() -> None:
    await standby_becomes(lambda s: s.in_rotation, "the standby in the data service's read rotation")


# --- Must show 2: the standby serves the reads ----------------------------------------------------------------------


async def test_under_a_read_load_the_standby_serves_the_reads_of_data_users_and_audit(
    system: System, ray_driver: None
) -> None:
    owner, admin = await account(system), await account(system, role="admin")
    async with system.async_client() as client:
        collection_id, item_ids = await _collection_with_items(client, owner, 5)
        await _in_rotation()
        name = standby_name(system)
        before_standby, before_primary = await scans(standby_dsn(system)), await scans(system.admin_dsn)
        before_reads = {s: counter(system, "ray_strata_db_reads_total", service=s, target=name) for s in SERVICES}
        reads = 50
        for n in range(reads):
            for path, who in (
                (f"/v1/collections/{collection_id}/items/{item_ids[n % 5]}", owner),
                (f"/v1/collections/{collection_id}/items?limit=50", owner),
                ("/v1/users/me", owner),
                ("/v1/audit?limit=5", admin),
            ):
                answer = await call(client, "GET", path, who)
                assert answer.status_code == 200, (path, answer.text)

    # Each service's reads were counted as the standby's, by strata and by the standby's own statistics.
    for service in SERVICES:
        await counted(system, "ray_strata_db_reads_total", before_reads[service] + reads, service=service, target=name)

    async def standby_scanned() -> dict[str, int]:
        now = await scans(standby_dsn(system))
        grew = {s: now[s] - before_standby[s] for s in SERVICES}
        return grew if all(grew[s] >= reads for s in SERVICES) else {}

    grew = await eventually(standby_scanned, timeout=30, interval=1, what="the standby's statistics to show the reads")
    after_primary = await scans(system.admin_dsn)
    primary_grew = {s: after_primary[s] - before_primary[s] for s in SERVICES}
    logger.warning("%d reads per service: scans on the standby %s, on the primary %s", reads, grew, primary_grew)
    # Operators see the standby as the data service routes to it, with its lag.
    readyz = operator_readyz(system, await operator_headers(system))
    (standby,) = readyz.json()["components"]["postgres"]["standbys"]
    assert standby["name"] == name and standby["status"] == "streaming" and standby["in_rotation"], standby
    assert standby["lag_bytes"] >= 0 and standby["lag_s"] >= 0, standby
    # The writes (the collection and its items) went to the primary: the standby refuses any.
    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
        conn = await asyncpg.connect(standby_dsn(system))
        try:
            await conn.execute("UPDATE data.collections SET name = 'refused' WHERE id = $1", uuid.UUID(collection_id))
        finally:
            await conn.close()


SERVICES = ("data", "users", "audit")


# --- Must show 3: read-your-writes, with and without the token ------------------------------------------------------


async def _cycles(client: httpx.AsyncClient, owner: Account, path: str, cycles: int, *, send_token: bool) -> int:
    """``cycles`` times: change the item (If-Match its version), then read it. How many reads missed the change."""
    version = (await call(client, "GET", path, owner)).json()["version"]
    stale = 0
    for n in range(cycles):
        changed = await _patch(client, owner, path, version, {"attributes": {"n": n}})
        version = changed.json()["version"]
        token = {"Strata-Consistency": changed.headers["strata-consistency"]} if send_token else {}
        read = await call(client, "GET", path, owner, headers=token)
        assert read.status_code == 200, read.text
        assert "strata-staleness" not in read.headers, read.headers
        if read.json()["version"] != version or read.json()["attributes"] != {"n": n}:
            stale += 1
    return stale


async def test_a_thousand_write_then_read_cycles_read_their_own_write_every_time_with_and_without_the_token(
    system: System, ray_driver: None
) -> None:
    # Clients at once: those of one mode send each answer's token back, the others ignore it (the gateway remembers
    # each account's session).
    modes = (True, False)
    owners = {mode: [await account(system) for _ in range(CHAINS)] for mode in modes}
    name = standby_name(system)
    async with system.async_client() as client:
        paths: dict[bool, list[str]] = {mode: [] for mode in modes}
        for mode in modes:
            for owner in owners[mode]:
                collection_id, (item_id,) = await _collection_with_items(client, owner, 1)
                paths[mode].append(f"/v1/collections/{collection_id}/items/{item_id}")
        await _in_rotation()
        before = {
            "reads": counter(system, "ray_strata_db_reads_total", service="data"),
            "replica": counter(system, "ray_strata_db_reads_total", service="data", target=name),
            "waits": counter(system, "ray_strata_db_replay_waits_total", service="data"),
            "waited_s": counter(system, "ray_strata_db_replay_wait_seconds_total", service="data"),
        }
        # Replay 10 ms behind: a read right after a write finds the standby without it, unless strata waits for
        # replay or reads on the primary (without either, nearly every read here would be stale).
        per_chain = CYCLES // CHAINS
        async with _replay_delayed(system, 10):
            chains = [
                _cycles(client, owner, path, per_chain, send_token=mode)
                for mode in modes
                for owner, path in zip(owners[mode], paths[mode], strict=True)
            ]
            stale = await asyncio.gather(*chains)
    with_token, without = sum(stale[:CHAINS]), sum(stale[CHAINS:])
    assert (with_token, without) == (0, 0), f"reads that did not show the write just made, of {CYCLES} each: {stale}"
    # Every read counted (one more per chain besides the cycles' reads), then where they ran: most on the standby.
    expected = before["reads"] + len(modes) * (CYCLES + CHAINS)
    reads = await counted(system, "ray_strata_db_reads_total", expected, service="data")
    replica = counter(system, "ray_strata_db_reads_total", service="data", target=name) - before["replica"]
    waits = counter(system, "ray_strata_db_replay_waits_total", service="data") - before["waits"]
    waited_s = counter(system, "ray_strata_db_replay_wait_seconds_total", service="data") - before["waited_s"]
    assert replica >= 1 and waits >= 1, (replica, waits)  # the standby served reads, some after waiting for it
    logger.warning(
        "%d cycles with the token and %d without, %d chains each: %d of %d reads on the standby, %d on the primary;"
        " %d waited for replay, %.1f ms each on average",
        CYCLES,
        CYCLES,
        CHAINS,
        replica,
        reads - before["reads"],
        reads - before["reads"] - replica,
        waits,
        1000 * waited_s / max(1.0, waits),
    )


# --- Must show 4: replay paused -------------------------------------------------------------------------------------


async def test_with_replay_paused_reads_fall_back_to_the_primary_and_the_standby_leaves_rotation_until_resumed(
    system: System, ray_driver: None
) -> None:
    owner, viewer = await account(system), await account(system)
    async with system.async_client() as client:
        collection_id, (item_id,) = await _collection_with_items(client, owner, 1)
        shared = await call(
            client, "PUT", f"/v1/collections/{collection_id}/members/{viewer.user_id}", owner, json={"role": "viewer"}
        )
        assert shared.status_code == 201, shared.text
        path = f"/v1/collections/{collection_id}/items/{item_id}"
        await _in_rotation()
        fallbacks_before = counter(system, "ray_strata_db_read_fallbacks_total", service="data", reason="replay-wait")
        async with _replay_paused(system):
            version = (await call(client, "GET", path, owner)).json()["version"]
            for n in range(5):
                changed = await _patch(client, owner, path, version, {"title": f"while paused {n}"})
                version = changed.json()["version"]
                # The token names a commit the paused standby never reaches: after the bounded wait, the primary.
                read = await call(
                    client, "GET", path, owner, headers={"Strata-Consistency": changed.headers["strata-consistency"]}
                )
                assert read.status_code == 200 and read.json()["version"] == version, read.text
            await counted(
                system, "ray_strata_db_read_fallbacks_total", fallbacks_before + 5, service="data", reason="replay-wait"
            )

            # Writes go on; the standby falls behind past the lag bound and leaves rotation.
            async def left_rotation() -> bool:
                nonlocal version
                version = (await _patch(client, owner, path, version, {"title": f"v{version}"})).json()["version"]
                return not (await data_standby()).in_rotation

            await eventually(left_rotation, timeout=60, interval=0.2, what="the paused standby to leave rotation")
            lagging = await data_standby()
            assert lagging.status == "lagging" and lagging.replay_paused, lagging
            assert lagging.lag_s is not None and lagging.lag_s > system.settings.replica_max_lag_s, lagging
            # Out of rotation, a read without a token (another session, which wrote nothing) is the primary's.
            fresh = await call(client, "GET", path, viewer)
            assert fresh.status_code == 200 and fresh.json()["version"] == version, fresh.text
        # Resumed: it replays what it missed, catches up and takes reads again.
        back = await standby_becomes(lambda s: s.in_rotation, "the resumed standby back in rotation")
        assert back.status == "streaming" and not back.replay_paused and back.lag_bytes is not None, back


async def _patch(
    client: httpx.AsyncClient, who: Account, path: str, version: int, body: dict[str, Any]
) -> httpx.Response:
    changed = await call(
        client,
        "PATCH",
        path,
        who,
        headers={"If-Match": f'"{version}"', "Content-Type": "application/merge-patch+json"},
        content=orjson.dumps(body),
    )
    assert changed.status_code == 200, changed.text
    return changed


# --- the token at the edge ------------------------------------------------------------------------------------------


async def test_a_malformed_consistency_token_is_a_400_problem_and_an_unsigned_one_is_ignored(
    system: System, ray_driver: None
) -> None:
    owner = await account(system)
    async with system.async_client() as client:
        for bad in ("yesterday", "0/", "1/2/3", "G/1", "0/" + "F" * 40, "0/1." + "A" * 100):
            answer = await call(client, "GET", "/v1/users/me", owner, headers={"Strata-Consistency": bad})
            assert answer.status_code == 400 and is_problem(answer), (bad, answer.text)
            assert answer.json()["type"].endswith("/invalid-consistency-token"), answer.text
        # A bare position is no token strata signed: ignored, the read is answered.
        fine = await call(client, "GET", "/v1/users/me", owner, headers={"Strata-Consistency": "FFFFFFFF/FFFFFFFF"})
        assert fine.status_code == 200, fine.text
        # The forged position is not handed back (signed, it would be honoured from then on).
        assert "FFFFFFFF/FFFFFFFF" not in fine.headers.get("strata-consistency", ""), fine.headers


async def test_a_signed_token_past_the_primarys_position_is_answered_with_the_primarys_position(
    system: System, ray_driver: None
) -> None:
    # Only a database restored to an earlier point (or replaced) under the same master secret meets such a token.
    signer = TokenSigner(system.runtime.settings.consistency_token_key())
    owner = await account(system)
    async with system.async_client() as client:
        collection_id, (item_id,) = await _collection_with_items(client, owner, 1)
        await _in_rotation()
        future = signer.sign((1 << 64) - 1)
        read = await call(
            client, "GET", f"/v1/collections/{collection_id}/items/{item_id}", owner,
            headers={"Strata-Consistency": future},
        )  # fmt: skip
        assert read.status_code == 200, read.text
        answered = signer.verify(read.headers["strata-consistency"])
    conn = await asyncpg.connect(system.admin_dsn)
    try:
        primary = parse_lsn(await conn.fetchval("SELECT pg_current_wal_insert_lsn()::text"))
    finally:
        await conn.close()
    # The answer names a position that exists: the next request with it is an ordinary one.
    assert answered is not None and answered <= primary, (read.headers["strata-consistency"], primary)
    await counted(system, "ray_strata_db_future_positions_total", 1, service="data")
