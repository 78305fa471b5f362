"""The embedded PostgreSQL's streaming standby: made by `strata up`, streaming, read-only, shown by `strata status`."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import System
from tests.integration.eventing import eventually
from tests.integration.standbys import standby_dsn

pytestmark = pytest.mark.integration


async def test_the_standby_streams_from_the_primary_and_replays_its_writes(system: System) -> None:
    primary = await asyncpg.connect(system.admin_dsn)
    standby = await asyncpg.connect(standby_dsn(system))
    try:
        streaming = await primary.fetch("SELECT application_name, state, sync_state FROM pg_stat_replication")
        assert [(r["application_name"], r["state"]) for r in streaming] == [("strata-standby-0", "streaming")]
        slot = await primary.fetchrow("SELECT active FROM pg_replication_slots WHERE slot_name = 'strata_standby_0'")
        assert slot is not None and slot["active"], "the standby streams through its replication slot"
        assert await standby.fetchval("SELECT pg_is_in_recovery()") is True

        marker = f"standby-{uuid.uuid4()}"
        await primary.execute("CREATE TABLE IF NOT EXISTS public.standby_probe (marker text)")
        await primary.execute("INSERT INTO public.standby_probe VALUES ($1)", marker)

        async def replayed() -> bool:
            try:
                found = await standby.fetchval("SELECT count(*) FROM public.standby_probe WHERE marker = $1", marker)
            except asyncpg.UndefinedTableError:  # the table itself is not replayed yet
                return False
            return bool(found)

        await eventually(replayed, timeout=30, interval=0.1, what="the standby to replay the primary's write")
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await standby.execute("INSERT INTO public.standby_probe VALUES ('refused')")
    finally:
        await standby.close()
        await primary.close()


def test_status_shows_the_standby_and_its_lag(system: System) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "strata"), "status", "--json"],
        env=system.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    rows = {c["name"]: c for c in report["components"]}
    assert rows["standby"]["state"] == "running" and rows["standby"]["pids"], rows["standby"]
    (standby,) = report["replication"]
    assert standby["name"] == "strata-standby-0" and standby["state"] == "streaming", standby
    assert isinstance(standby["lag_bytes"], int) and standby["lag_bytes"] >= 0
    assert standby["lag_s"] is None or standby["lag_s"] >= 0
