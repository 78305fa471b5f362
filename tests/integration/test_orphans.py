"""A system whose owner dies is stopped, not left running: SIGKILL, SIGTERM, and `strata down` from another shell.

Each test starts a whole second system (PostgreSQL with its standby, Kafka, Ray with the Serve apps, the TLS front)
from a child process. They run last, after `test_down.py` has stopped the session's system, so that the two never
share the machine's two cores.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from strata.cluster import settings_env
from strata.cluster._ray import find_processes, temp_dir_for
from strata.cluster._state import State, port_in_use
from strata.cluster._systems import systems
from tests.conftest import make_settings

pytestmark = [pytest.mark.integration, pytest.mark.last]

ROOT = Path(__file__).resolve().parents[2]
STRATA = str(Path(sys.executable).parent / "strata")
# Bounds on a hang, not measurements: a system starts here in about 40 s and stops in about 50 s.
START_WITHIN_S = 300.0
STOP_WITHIN_S = 240.0


class Output:
    """The lines a child process prints, read on a thread so that its pipe never fills up."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._proc = proc
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, predicate: Callable[[str], bool], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = next((line for line in self.lines if predicate(line)), None)
            if found is not None:
                return found
            if self._proc.poll() is not None and not self._thread.is_alive():
                break
            time.sleep(0.5)
        tail = "\n".join(self.lines[-30:])
        raise AssertionError(f"the child (exit {self._proc.poll()}) did not print the line awaited; it said:\n{tail}")


def _lighter(data_dir: Path) -> dict[str, str]:
    """Environment of a `strata` command for a second system in ``data_dir``: the session's settings, one replica
    per app, one pool actor and one relay per service."""
    return {**os.environ, **settings_env(make_settings(data_dir, min_replicas={}, db_pool_actors=1, outbox_relays=1))}


def _processes_of(data_dir: Path) -> tuple[list[int], list[int]]:
    """Every pid the system of ``data_dir`` recorded or runs under its Ray head's temp dir, and its listening ports."""
    state = State.load(data_dir.resolve())
    pids = {p.pid for recorded in state.components.values() for p in recorded.procs}
    pids |= {p.pid for p in find_processes(temp_dir_for(data_dir), gcs_port=state.ports.get("ray"))}
    return sorted(pids), sorted(set(state.ports.values()))


def _alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.Error:
            continue
    return out


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.5)
    return _alive(pids)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="strata-test-orphan-"))
    yield path
    # Whatever a failed assertion left: stopped by the code under test's own `down`.
    subprocess.run([STRATA, "down"], env=_lighter(path), cwd=ROOT, capture_output=True, timeout=STOP_WITHIN_S)
    shutil.rmtree(temp_dir_for(path), ignore_errors=True)
    shutil.rmtree(path, ignore_errors=True)


def test_a_foreground_strata_killed_leaves_an_orphan_that_down_orphans_stops_keeping_its_data_and_that_leaves_when_stopped_from_elsewhere(  # noqa: E501
    data_dir: Path,
) -> None:
    env = _lighter(data_dir)
    command = [STRATA, "up", "--foreground"]
    child = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = Output(child)
    output.wait_for(lambda line: line.startswith("streaming logs"), START_WITHIN_S)
    pids, ports = _processes_of(data_dir)
    assert len(pids) >= 6, pids  # PostgreSQL, its standby, Kafka, Ray's daemons, the TLS front

    child.kill()  # SIGKILL: nothing of it runs to stop its system
    child.wait(timeout=30)
    assert _alive(pids) == pids, "a killed owner's system runs on (what --orphans is for)"
    [orphan] = [s for s in systems() if s.data_dir == data_dir.resolve()]
    assert orphan.orphaned and not orphan.throwaway

    down = subprocess.run(
        [STRATA, "down", "--orphans"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=STOP_WITHIN_S
    )
    assert down.returncode == 0, down.stderr
    assert f"stopped an orphaned strata system (strata up in {data_dir.resolve()}" in down.stdout, down.stdout
    assert "its data kept" in down.stdout
    assert _wait_gone(pids, 30) == []
    assert [port for port in ports if port_in_use("127.0.0.1", port)] == []
    assert (data_dir / "postgres").is_dir(), "a kept data dir keeps its data"
    assert all(s.data_dir != data_dir.resolve() for s in systems())

    # The same data dir starts again, and its foreground `strata up` leaves once `strata down` stops it elsewhere.
    child = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = Output(child)
    output.wait_for(lambda line: line.startswith("streaming logs"), START_WITHIN_S)
    stopped = subprocess.run([STRATA, "down"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=STOP_WITHIN_S)
    assert stopped.returncode == 0, stopped.stderr
    assert child.wait(timeout=30) == 0
    output.wait_for(lambda line: "stopped from elsewhere" in line, 5)
    assert not any(line.startswith("stopping strata") for line in output.lines), "it did not stop what was stopped"


def test_a_test_session_stopped_by_sigterm_stops_its_system(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    driver = ROOT / "tests" / "integration" / "sessions" / "hold_the_system.py"
    child = subprocess.Popen(
        [sys.executable, "-m", "pytest", str(driver), "-q", "-p", "no:cacheprovider", "-o", "addopts="],
        env={**os.environ, "HOLD_SYSTEM_READY_FILE": str(ready)},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Output(child)
    deadline = time.monotonic() + START_WITHIN_S
    while not ready.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ready.exists(), "\n".join(output.lines[-30:])
    data_dir = Path(ready.read_text())
    pids, ports = _processes_of(data_dir)
    assert len(pids) >= 6, pids
    assert [s.owner.pid for s in systems() if s.data_dir == data_dir.resolve() and s.owner] == [child.pid]

    child.send_signal(signal.SIGTERM)

    child.wait(timeout=STOP_WITHIN_S)
    assert _wait_gone(pids, 30) == [], "\n".join(output.lines[-30:])
    assert [port for port in ports if port_in_use("127.0.0.1", port)] == []
    assert not data_dir.exists(), "its throw-away data dir is removed as at a normal end"
    assert all(s.data_dir != data_dir.resolve() for s in systems())
