"""The `strata` command as an operator meets it: one-line errors, a harmless second `up`, `status`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from strata.cluster._state import free_port
from tests.conftest import System

pytestmark = pytest.mark.integration

STRATA = str(Path(sys.executable).parent / "strata")


def _strata(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([STRATA, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    env.update(
        {
            "STRATA_DATA_DIR": str(tmp_path / "data"),
            "STRATA_GATEWAY_PORT": str(free_port()),
            "STRATA_RAY_DASHBOARD_PORT": str(free_port()),
            **extra,
        }
    )
    return env


def _assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip() and "Warning" not in line]
    errors = [line for line in lines if line.startswith("strata: error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_missing_jdk_is_one_line(tmp_path: Path) -> None:
    env = _clean_env(tmp_path)
    env.pop("JAVA_HOME", None)
    env["PATH"] = str(Path(sys.executable).parent)  # the virtualenv's tools only: no java, no mvn
    result = _strata("up", env=env)
    _assert_one_line_error(result, "Java", "STRATA_KAFKA_BOOTSTRAP_SERVERS")
    assert not (tmp_path / "data" / "postgres").exists(), "nothing may start before the preflight passes"


def test_taken_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _strata("up", env=_clean_env(tmp_path, STRATA_GATEWAY_PORT=str(port)))
    _assert_one_line_error(result, f"port {port}", "already in use")


def test_unreachable_external_dsn_is_one_line(tmp_path: Path) -> None:
    dsn = f"postgresql://someone:hunter2@127.0.0.1:{free_port()}/nowhere"
    result = _strata("up", env=_clean_env(tmp_path, STRATA_DATABASE_URL=dsn))
    _assert_one_line_error(result, "cannot reach PostgreSQL", "127.0.0.1")
    assert "hunter2" not in result.stderr + result.stdout


def test_invalid_setting_is_one_line(tmp_path: Path) -> None:
    result = _strata("status", env=_clean_env(tmp_path, STRATA_DB_BACKENDS='{"billing": "actors"}'))
    _assert_one_line_error(result, "STRATA_DB_BACKENDS", "billing")


def test_second_up_says_already_running(system: System) -> None:
    result = _strata("up", env=system.env)
    assert result.returncode == 0, result.stderr
    assert "already running" in result.stdout
    assert system.runtime.gateway_url in result.stdout


def test_status_shows_components_and_apps(system: System) -> None:
    result = _strata("status", "--json", env=system.env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    states = {c["name"]: c for c in report["components"]}
    for name in ("postgres", "kafka", "ray"):
        assert states[name]["state"] == "running" and states[name]["pids"], states[name]
    assert states["gateway"]["state"] == "ready"
    assert {"gateway", "auth", "users", "data"} <= set(report["apps"])
    assert set(report["events"]["outbox"]) == {"auth", "users", "data"}
    assert all(isinstance(backlog["rows"], int) for backlog in report["events"]["outbox"].values())
    assert isinstance(report["events"]["consumers"]["audit"]["lag"], int)
    table = _strata("status", env=system.env)
    assert table.returncode == 0 and "postgres" in table.stdout and "DataService" in table.stdout
    assert "OUTBOX" in table.stdout and "CONSUMER" in table.stdout


def test_unreachable_external_kafka_is_one_line(tmp_path: Path) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    result = _strata("up", env=_clean_env(tmp_path, STRATA_KAFKA_BOOTSTRAP_SERVERS=bootstrap))
    _assert_one_line_error(result, "cannot reach Kafka", bootstrap)


def test_dlq_commands_list_and_replay(system: System) -> None:
    listing = _strata("events", "dlq", "list", "audit", "--all", env=system.env)
    assert listing.returncode == 0, listing.stderr
    replay = _strata("events", "dlq", "replay", "no-such-group", env=system.env)
    assert replay.returncode == 0 and "replayed 0 dead letter(s)" in replay.stdout


def test_keys_list_reaches_the_auth_service_with_the_cluster_s_token_from_the_settings(system: System) -> None:
    # As an operator's shell has it: no Ray token in the environment; strata finds it itself (settings or data dir).
    env = {k: v for k, v in system.env.items() if not k.startswith("RAY_")}
    result = _strata("keys", "list", env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines and sum(" active " in line for line in lines) == 1, result.stdout
    assert all(line.split()[1] in ("EdDSA", "RS256") for line in lines), result.stdout
    assert not [line for line in result.stderr.splitlines() if line.startswith("INFO")], result.stderr  # no chatter


def test_a_command_needing_the_services_of_a_strata_that_is_not_running_is_one_line(tmp_path: Path) -> None:
    result = _strata("keys", "list", env=_clean_env(tmp_path, STRATA_RAY_PORT=str(free_port())))
    _assert_one_line_error(result, "strata is not running", "strata up")
