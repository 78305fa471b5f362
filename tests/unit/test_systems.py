"""The per-user registry of strata systems and their owners: who is an orphan, and what stopping orphans does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from strata.cluster import _systems
from strata.schemas import Settings


@pytest.fixture(autouse=True)
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state" / "strata" / "systems"


@pytest.fixture
def owner() -> Iterator[subprocess.Popen[bytes]]:
    """A process that stands for a test session: alive until the test kills it."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def _settings(data_dir: Path, **values: object) -> Settings:
    data_dir.mkdir(parents=True, exist_ok=True)
    return Settings(_env_file=None, data_dir=data_dir, **values)  # type: ignore[arg-type]


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait()


def test_a_system_whose_owner_is_gone_is_an_orphan_and_one_without_owner_never_is(
    tmp_path: Path, owner: subprocess.Popen[bytes]
) -> None:
    _systems.register(_settings(tmp_path / "test"), owner=owner.pid, throwaway=True, started_by="test session")
    _systems.register(_settings(tmp_path / "kept"), owner=None, throwaway=False, started_by="strata up")
    assert _systems.orphans(throwaway_only=False) == []

    _kill(owner)

    [orphan] = _systems.orphans(throwaway_only=False)
    assert orphan.data_dir == (tmp_path / "test").resolve()
    assert orphan.started_by == "test session"
    assert f"owner pid {owner.pid} gone" in orphan.describe()


def test_a_recycled_pid_is_not_taken_for_the_owner(tmp_path: Path) -> None:
    # This process's pid, with another start time: what a pid reused by an unrelated process looks like.
    _systems.register(_settings(tmp_path / "test"), owner=os.getpid(), throwaway=True, started_by="test session")
    path = next(_systems.registry_dir().glob("*.json"))
    entry = json.loads(path.read_text())
    entry["owner"]["create_time"] -= 1000
    path.write_text(json.dumps(entry))

    assert [s.data_dir for s in _systems.orphans(throwaway_only=True)] == [(tmp_path / "test").resolve()]


def test_stopping_orphans_stops_throwaway_ones_removes_their_data_and_keeps_a_kept_dir_s_data(
    tmp_path: Path, owner: subprocess.Popen[bytes]
) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        throwaway = _settings(tmp_path / "strata-test-1", gateway_port=21443)
        kept = _settings(tmp_path / "kept", gateway_port=22443)
        running = _settings(tmp_path / "strata-test-2")
        _systems.register(throwaway, owner=owner.pid, throwaway=True, started_by="test session")
        _systems.register(kept, owner=other.pid, throwaway=False, started_by="strata up")
        _systems.register(running, owner=alive.pid, throwaway=True, started_by="test session")
        _kill(owner)
        _kill(other)
        stopped: list[Settings] = []

        def stop(settings: Settings) -> list[int]:
            stopped.append(settings)
            return [1, 2, 3]

        said: list[str] = []
        # What a new test session or `strata up` does: throw-away orphans only.
        first = _systems.stop_orphans(stop, throwaway_only=True, echo=said.append)
        assert [s.data_dir for s in first] == [throwaway.data_dir.resolve()]
        assert [s.gateway_port for s in stopped] == [21443], "stopped with the settings it was started with"
        assert not throwaway.data_dir.exists()
        assert any(
            "stopped an orphaned strata system (test session in" in line and "3 processes" in line for line in said
        )

        # What `strata down --orphans` does: every orphan, a kept data dir keeps its data.
        second = _systems.stop_orphans(stop, throwaway_only=False, echo=said.append)
        assert [s.data_dir for s in second] == [kept.data_dir.resolve()]
        assert kept.data_dir.exists()
        assert "its data kept" in said[-1]
        assert [s.data_dir for s in _systems.systems()] == [running.data_dir.resolve()], "a live owner's is left"
    finally:
        _kill(other)
        _kill(alive)


def test_stopping_orphans_leaves_the_data_dir_being_started(tmp_path: Path, owner: subprocess.Popen[bytes]) -> None:
    settings = _settings(tmp_path / "strata-test-1")
    _systems.register(settings, owner=owner.pid, throwaway=True, started_by="test session")
    _kill(owner)

    stopped = _systems.stop_orphans(lambda _: [], throwaway_only=True, besides=settings.data_dir, echo=print)

    assert stopped == []
    assert settings.data_dir.exists()


def test_an_orphan_whose_data_dir_is_gone_is_forgotten(tmp_path: Path, owner: subprocess.Popen[bytes]) -> None:
    settings = _settings(tmp_path / "strata-test-1")
    _systems.register(settings, owner=owner.pid, throwaway=True, started_by="test session")
    _kill(owner)
    settings.data_dir.rmdir()
    said: list[str] = []

    def stop(_: Settings) -> list[int]:
        raise AssertionError("nothing recorded is left to stop")

    assert _systems.stop_orphans(stop, throwaway_only=True, echo=said.append) == []
    assert _systems.systems() == []
    assert "its data dir is gone" in said[0]


def test_a_second_start_does_not_take_over_a_system_whose_owner_runs(
    tmp_path: Path, owner: subprocess.Popen[bytes]
) -> None:
    settings = _settings(tmp_path / "kept")
    _systems.register(settings, owner=owner.pid, throwaway=False, started_by="strata up")
    _systems.register(settings, owner=None, throwaway=False, started_by="strata up")
    [record] = _systems.systems()
    assert record.owner is not None and record.owner.pid == owner.pid

    _systems.unregister(settings.data_dir)
    assert _systems.systems() == []


def test_the_registry_holds_no_secret(tmp_path: Path) -> None:
    secret = "s3cr3t-token-never-written"
    settings = _settings(tmp_path / "kept", ray_auth_token=secret, secret_key=secret * 2)
    _systems.register(settings, owner=None, throwaway=False, started_by="strata up")
    text = next(_systems.registry_dir().glob("*.json")).read_text()
    assert secret not in text
    assert str(settings.gateway_port) in text
    assert oct(_systems.registry_dir().stat().st_mode & 0o777) == oct(0o700)
