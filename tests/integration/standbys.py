"""What the tests of read replicas share: the standby's address, its table statistics, strata's routing counters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from strata.cluster._state import State
from strata.cluster._status import status_metrics_url
from strata.contracts import DataClient
from strata.schemas import StandbyCheck
from tests.conftest import System
from tests.integration.eventing import eventually

SCANNED = {"data": "collections", "users": "profiles", "audit": "log"}
"""The table every read of each service touches: the data service checks the caller's role in the collection."""


def standby_port(system: System) -> int:
    return State.load(system.settings.data_dir.resolve()).ports["postgres_standby_0"]


def standby_dsn(system: System) -> str:
    primary = system.admin_dsn
    host_and_port = primary.split("@", 1)[1].split("/", 1)[0]
    return primary.replace(host_and_port, f"127.0.0.1:{standby_port(system)}")


def standby_name(system: System) -> str:
    """The standby's name in strata's metrics and readiness: its address."""
    return f"127.0.0.1:{standby_port(system)}"


async def scans(dsn: str) -> dict[str, int]:
    """Sequential and index scans of each service's table on the server at ``dsn``, as its statistics show them now."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        rows = await conn.fetch(
            "SELECT schemaname, relname, coalesce(seq_scan, 0) + coalesce(idx_scan, 0) AS scans"
            " FROM pg_stat_user_tables"
        )
    finally:
        await conn.close()
    found = {(r["schemaname"], r["relname"]): int(r["scans"]) for r in rows}
    return {service: found.get((service, table), 0) for service, table in SCANNED.items()}


def counter(system: System, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``, as Ray's metrics agent exports them now."""
    text = httpx.get(status_metrics_url(system.settings), timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def counted(system: System, name: str, at_least: float, timeout: float = 90, **labels: str) -> float:
    """``name`` once it reaches ``at_least`` (Ray exports what workers record every few seconds), bounded."""
    deadline = time.monotonic() + timeout
    value = counter(system, name, **labels)
    while value < at_least and time.monotonic() < deadline:
        await asyncio.sleep(2)
        value = counter(system, name, **labels)
    assert value >= at_least, f"{name}{labels} is {value}, expected at least {at_least} within {timeout} s"
    return value


async def data_standby() -> StandbyCheck:
    """The standby as the data service routes to it (every replica polls alike; one answers)."""
    (standby,) = (await DataClient().readiness()).standbys
    return standby


async def standby_becomes(check: Callable[[StandbyCheck], bool], what: str, timeout: float = 60) -> StandbyCheck:
    async def holds() -> bool:
        return check(await data_standby())

    await eventually(holds, timeout=timeout, interval=0.25, what=what)
    return await data_standby()


async def on_standby(system: System, sql: str) -> None:
    """Run ``sql`` on the standby as the admin (pausing and resuming replay, say)."""
    conn = await asyncpg.connect(standby_dsn(system))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()
