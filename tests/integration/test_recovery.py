"""A crashed run (servers killed with SIGKILL, state left behind) is recovered by the next `strata up`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest

from strata.cluster._state import State
from strata.contracts import DataClient
from strata.schemas import CollectionCreate, DataCaller, ServiceUnavailable
from tests.conftest import System
from tests.integration.accounts import Account, account, is_problem
from tests.integration.eventing import eventually
from tests.integration.standbys import standby_dsn

pytestmark = pytest.mark.integration


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    if psutil.pid_exists(pid):
        psutil.wait_procs([psutil.Process(pid)], timeout=10)


def _reads_while_the_primary_is_gone(system: System, member: Account, paths: list[str]) -> list[httpx.Response]:
    """GETs of ``paths`` until they say they are stale: the first ones after the kill may be served by the standby
    before the data service notices the primary is gone (it polls every ``replica_poll_s``), bounded."""
    answers: list[httpx.Response] = []
    deadline = time.monotonic() + 60
    with system.client() as client:
        while time.monotonic() < deadline:
            round_ = [client.get(path, headers=member.headers) for path in paths]
            answers += round_
            if all("strata-staleness" in a.headers for a in round_):
                break
            time.sleep(0.2)
    return answers


async def _replayed_on_the_standby(system: System, item_id: str) -> None:
    conn = await asyncpg.connect(standby_dsn(system))
    try:

        async def replayed() -> bool:
            return bool(await conn.fetchval("SELECT count(*) FROM data.items WHERE id = $1", uuid.UUID(item_id)))

        await eventually(replayed, timeout=30, interval=0.1, what="the standby to replay the item")
    finally:
        await conn.close()


async def _write_through_the_handle(user_id: str) -> None:
    await DataClient().create_collection(DataCaller(user_id=user_id), CollectionCreate(name="refused"))


def test_up_after_a_crash_restarts_what_died(system: System, ray_driver: None) -> None:
    data_dir = system.settings.data_dir.resolve()
    before = State.load(data_dir).components
    member = asyncio.run(account(system))
    with system.client() as client:
        made = client.post("/v1/collections", headers=member.headers, json={"name": "through the crash"})
        assert made.status_code == 201, made.text
        item = client.post(f"{made.headers['location']}/items", headers=member.headers, json={"title": "kept"})
        assert item.status_code == 201, item.text
    asyncio.run(_replayed_on_the_standby(system, item.json()["id"]))
    killed = [before["postgres"].pids[0], before["kafka"].pids[0]]
    _kill(killed[0])

    # The primary is gone (issue 12, Must show 5). Reads go on from the standby and say how stale they may be.
    paths = [made.headers["location"], item.headers["location"], f"{made.headers['location']}/items"]
    answers = _reads_while_the_primary_is_gone(system, member, paths)
    assert {a.status_code for a in answers} == {200}, [a.text for a in answers if a.status_code != 200][:3]
    stale = answers[-len(paths) :]
    assert all(float(a.headers["strata-staleness"]) >= 0 for a in stale), [a.headers for a in stale]
    assert stale[1].json()["title"] == "kept" and [i["title"] for i in stale[2].json()["items"]] == ["kept"]
    # Writes fail fast: a 503 the client may retry (the primary refuses connections; no timeout is waited out).
    with system.client() as client:
        started = time.monotonic()
        refused = client.post(f"{made.headers['location']}/items", headers=member.headers, json={"title": "no"})
        took = time.monotonic() - started
    assert refused.status_code == 503 and is_problem(refused), refused.text
    assert refused.json()["type"].endswith("/service-unavailable"), refused.text
    assert int(refused.headers["retry-after"]) >= 1, refused.headers
    # Not a performance bound: a write that waited out the database's timeout (the pool's connect timeout, at most
    # db_command_timeout_s, 10 s) would take that long at least; one refused because the primary refuses connections
    # took well under a second here, so half the timeout tells the two apart on any machine.
    timeout_s = min(system.settings.db_command_timeout_s, 10.0)
    assert took < timeout_s / 2, f"a write took {took:.2f} s to be refused with the primary gone (timeout {timeout_s}s)"
    # The service's own answer, one hop away: its database is unreachable, a ServiceUnavailable (not an error).
    with pytest.raises(ServiceUnavailable) as unavailable:
        asyncio.run(_write_through_the_handle(member.user_id))
    assert unavailable.value.retry_after == 2 and "database" in unavailable.value.detail
    _kill(killed[1])

    result = subprocess.run(
        [str(Path(sys.executable).parent / "strata"), "up"],
        env=system.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "recovering from an earlier run" in result.stdout
    assert "strata is up" in result.stdout
    after = State.load(data_dir).components
    assert after["kafka"].alive() and after["postgres"].alive()
    assert after["kafka"].pids[0] not in killed and after["postgres"].pids[0] not in killed
    assert after["ray"].pids == before["ray"].pids, "Ray was alive and must not have been restarted"
    assert httpx.get(system.runtime.gateway_url + "/readyz", timeout=15, verify=system.verify).status_code == 200
    # The primary is back: writes succeed and reads are fresh again, with the same Ray, Serve and replicas.
    with system.client() as client:
        deadline = time.monotonic() + 60
        while True:
            written = client.post(f"{made.headers['location']}/items", headers=member.headers, json={"title": "back"})
            if written.status_code == 201 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert written.status_code == 201, written.text
        fresh = client.get(written.headers["location"], headers=member.headers)
        assert fresh.status_code == 200 and "strata-staleness" not in fresh.headers, fresh.headers
