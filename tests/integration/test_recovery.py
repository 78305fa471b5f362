"""A crashed run (servers killed with SIGKILL, state left behind) is recovered by the next `strata up`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from strata.cluster._state import State
from strata.schemas import DataCaller, ServiceUnavailable
from strata.serve_apps.data import DataClient
from tests.conftest import System
from tests.integration.accounts import Account, account, is_problem

pytestmark = pytest.mark.integration


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    if psutil.pid_exists(pid):
        psutil.wait_procs([psutil.Process(pid)], timeout=10)


def _answers_while_postgres_is_gone(system: System, member: Account, path: str) -> list[httpx.Response]:
    """GETs of ``path`` until one is refused: a backend orphaned by the kill may still answer a moment (bounded)."""
    answers: list[httpx.Response] = []
    deadline = time.monotonic() + 60
    with system.client() as client:
        while time.monotonic() < deadline:
            answers.append(client.get(path, headers=member.headers))
            if answers[-1].status_code != 200:
                break
            time.sleep(0.2)
    return answers


async def _read_through_the_handle(user_id: str, collection_id: str) -> None:
    await DataClient().get_collection(DataCaller(user_id=user_id), collection_id)


def test_up_after_a_crash_restarts_what_died(system: System, ray_driver: None) -> None:
    data_dir = system.settings.data_dir.resolve()
    before = State.load(data_dir).components
    member = asyncio.run(account(system))
    with system.client() as client:
        made = client.post("/v1/collections", headers=member.headers, json={"name": "through the crash"})
        assert made.status_code == 201, made.text
    killed = [before["postgres"].pids[0], before["kafka"].pids[0]]
    _kill(killed[0])
    # PostgreSQL is gone: a data read is a 503 the client may retry, never a 500. (Which 503 depends on the gateway
    # replica that answers: one that never fetched the role permissions cannot fetch them now either.)
    answers = _answers_while_postgres_is_gone(system, member, made.headers["location"])
    refused = answers[-1]
    assert {a.status_code for a in answers[:-1]} <= {200} and refused.status_code == 503, refused.text
    assert is_problem(refused) and refused.json()["type"].endswith("/service-unavailable"), refused.text
    assert int(refused.headers["retry-after"]) >= 1, refused.text
    # The service's own answer, one hop away: its database is unreachable, a ServiceUnavailable (not an error).
    collection_id = made.json()["id"]
    with pytest.raises(ServiceUnavailable) as unavailable:
        asyncio.run(_read_through_the_handle(member.user_id, collection_id))
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
