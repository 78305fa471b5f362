"""`strata scale` and `strata status`'s deployment rows, against the session's running system.

Only the data app is scaled, and within the bounds it has (1..2): other tests rely on two replicas of the gateway
and of users.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import System

pytestmark = pytest.mark.integration

STRATA = str(Path(sys.executable).parent / "strata")


def _strata(*args: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([STRATA, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _status(system: System) -> dict[tuple[str, str], dict[str, Any]]:
    result = _strata("status", "--json", env=system.env)
    assert result.returncode == 0, result.stderr
    return {(row["app"], row["deployment"]): row for row in json.loads(result.stdout)["deployments"]}


def _one_line_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode == 1, result
    errors = [line for line in result.stderr.splitlines() if line.startswith("strata: error:")]
    assert len(errors) == 1 and fragment in errors[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_scale_applies_to_the_running_data_app_records_it_and_restarts_nobody(system: System) -> None:
    record = system.settings.data_dir / "scale.json"
    before = _status(system)
    replicas = {key: {r["replica_id"] for r in row["replicas"]} for key, row in before.items() if key[0] != "data"}
    try:
        result = _strata("scale", "data", "--min", "1", "--max", "2", env=system.env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "data: DataService 1..2, DataProcessing 1..2 replicas, running", result.stdout
        assert json.loads(record.read_text()) == {"data": {"min": 1, "max": 2}}
        assert oct(record.stat().st_mode & 0o777) == "0o600"
        after = _status(system)
        for name in ("DataService", "DataProcessing"):
            row = after[("data", name)]
            assert (row["min_replicas"], row["max_replicas"]) == (1, 2), row
            assert row["running"] >= 1 and row["status"] in ("HEALTHY", "UPSCALING", "DOWNSCALING"), row
        # The whole config went again, with the session's own floors: the gateway and users keep their 2 replicas,
        # the very same ones (a bounds change is a lightweight update in Serve).
        floors = (after[("gateway", "Gateway")]["min_replicas"], after[("users", "UsersService")]["min_replicas"])
        assert floors == (2, 2)
        assert {key: {r["replica_id"] for r in after[key]["replicas"]} for key in replicas} == replicas
    finally:
        reset = _strata("scale", "data", "--reset", env=system.env)
    assert reset.returncode == 0, reset.stderr
    assert reset.stdout.startswith("data: record dropped; DataService 1..2"), reset.stdout
    assert json.loads(record.read_text()) == {}


def test_scale_refuses_an_unknown_app_and_a_floor_above_the_ceiling_in_one_line(system: System) -> None:
    _one_line_error(_strata("scale", "billing", "--min", "1", env=system.env), "unknown app 'billing'")
    _one_line_error(_strata("scale", "data", "--min", "3", "--max", "2", env=system.env), "--min 3 is above --max 2")
    record = system.settings.data_dir / "scale.json"
    assert not record.exists() or "data" not in json.loads(record.read_text())  # a refused request records nothing


def test_status_shows_each_deployment_with_its_replicas_cpu_and_the_autoscaler_s_record(system: System) -> None:
    """The records come from the policies in the Serve controller itself (RequestPolicy, CpuPolicy): each writes its
    deployment's decision to the GCS within a tick of starting and again at least every 5 s."""
    rows = _status(system)
    table = _strata("status", env=system.env)
    gateway = rows[("gateway", "Gateway")]
    assert gateway["running"] == 2 and gateway["target_replicas"] == 2, gateway
    assert all(r["pid"] and r["state"] == "RUNNING" for r in gateway["replicas"]), gateway
    assert all(isinstance(r["cpu_percent"], float) for r in gateway["replicas"]), gateway  # replicas run here
    assert isinstance(gateway["cpu_percent"], float)
    service, processing = rows[("data", "DataService")]["autoscaler"], rows[("data", "DataProcessing")]["autoscaler"]
    assert service is not None and service["metric"] == "ongoing_requests", service
    assert "ongoing requests on" in service["reason"], service
    assert processing is not None and processing["metric"] == "cpu_utilization", processing
    assert rows[("audit", "AuditService")]["autoscaler"] is None  # fixed size: no autoscaler
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert any(line.split()[:2] == ["APP", "DEPLOYMENT"] and "LAST DECISION" in line for line in lines), table.stdout
    row = next(line for line in lines if line.split()[:2] == ["data", "DataService"])
    assert "(ongoing_requests=" in row and "ongoing requests on" in row, row
