"""A crashed run (servers killed with SIGKILL, state left behind) is recovered by the next `strata up`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from strata.cluster._state import State
from tests.conftest import System

pytestmark = pytest.mark.integration


def test_up_after_a_crash_restarts_what_died(system: System) -> None:
    data_dir = system.settings.data_dir.resolve()
    before = State.load(data_dir).components
    killed = [before["kafka"].pids[0], before["postgres"].pids[0]]
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    psutil.wait_procs([psutil.Process(pid) for pid in killed if psutil.pid_exists(pid)], timeout=10)

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
