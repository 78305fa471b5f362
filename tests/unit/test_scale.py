"""`strata scale`: the bounds asked for, checked, merged into ``scale.json`` (atomic, 0600), kept for `strata up`."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from strata.cluster._cli_scale import requested_bounds, scale, scale_report
from strata.cluster._errors import ClusterError, ScaleRefused
from strata.cluster._scale import Bounds, check_bounds, load_scale, save_scale
from strata.cluster._serve import serve_config
from strata.schemas import Settings


def test_the_options_become_bounds_and_a_mix_that_means_nothing_is_refused() -> None:
    assert requested_bounds(low=None, high=None, replicas=3, reset=False) == Bounds(3, 3)
    assert requested_bounds(low=2, high=None, replicas=None, reset=False) == Bounds(2, None)
    assert requested_bounds(low=None, high=None, replicas=None, reset=True) is None
    for options, message in (
        ({"low": None, "high": None, "replicas": None, "reset": False}, "give --min, --max, --replicas or --reset"),
        ({"low": 1, "high": None, "replicas": 2, "reset": False}, "--replicas N sets both bounds"),
        ({"low": None, "high": 2, "replicas": None, "reset": True}, "--reset drops"),
        ({"low": None, "high": None, "replicas": 0, "reset": False}, "between 1 and 64"),
    ):
        with pytest.raises(ScaleRefused, match=message):
            requested_bounds(**options)  # type: ignore[arg-type]


def test_bounds_are_checked_with_the_values_in_the_message() -> None:
    check_bounds("data", Bounds(1, 64))
    with pytest.raises(ScaleRefused, match="unknown app 'billing'; known: gateway, auth, users, data, audit"):
        check_bounds("billing", Bounds(1, 1))
    with pytest.raises(ScaleRefused, match="--max 65 for data: replicas must be between 1 and 64"):
        check_bounds("data", Bounds(None, 65))
    with pytest.raises(ScaleRefused, match="--min 3 is above --max 2 for data"):
        check_bounds("data", Bounds(3, 2))
    assert issubclass(ScaleRefused, ClusterError)  # main() prints it as one line and exits 1


def test_the_record_is_written_atomically_with_mode_0600_and_read_back(tmp_path: Path) -> None:
    save_scale(tmp_path, {"data": Bounds(1, 2), "users": Bounds(None, 4)})
    path = tmp_path / "scale.json"
    assert json.loads(path.read_text()) == {"data": {"min": 1, "max": 2}, "users": {"max": 4}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(tmp_path.glob("*.tmp"))
    assert load_scale(tmp_path) == {"data": Bounds(1, 2), "users": Bounds(None, 4)}
    assert load_scale(tmp_path / "nowhere") == {}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot be read"),
        ("[1]", "must map app names to bounds"),
        ('{"data": {"min": 1, "floor": 2}}', "must be an object with min and/or max"),
        ('{"data": {"min": "1"}}', "not whole numbers"),
        ('{"billing": {"min": 1}}', "unknown app 'billing'"),
        ('{"data": {"min": 3, "max": 2}}', "--min 3 is above --max 2"),
    ],
)
def test_a_record_that_is_not_valid_is_one_clear_error(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "scale.json").write_text(content)
    with pytest.raises(ScaleRefused, match=message):
        load_scale(tmp_path)


def test_later_bounds_merge_over_earlier_ones() -> None:
    assert Bounds(None, 4).merged_over(Bounds(2, 3)) == Bounds(2, 4)
    assert Bounds(1, None).merged_over(None) == Bounds(1, None)


def _settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, ray_dashboard_port=1, ray_port=2)


def test_with_strata_not_running_the_bounds_are_recorded_only_and_kept_for_the_next_up(tmp_path: Path) -> None:
    bounds, applied = scale(_settings(tmp_path), "data", Bounds(None, 3))
    assert not applied
    assert bounds == {"DataService": {"min": 1, "max": 3}, "DataProcessing": {"min": 1, "max": 3}}
    bounds, _ = scale(_settings(tmp_path), "data", Bounds(2, None))  # merged over the earlier --max 3
    assert bounds["DataService"] == {"min": 2, "max": 3}
    assert json.loads((tmp_path / "scale.json").read_text()) == {"data": {"min": 2, "max": 3}}
    deployed = serve_config(_settings(tmp_path), scale=load_scale(tmp_path))  # what `strata up` deploys
    data = next(a for a in deployed["applications"] if a["name"] == "data")
    assert all(d["autoscaling_config"]["min_replicas"] == 2 for d in data["deployments"])
    with pytest.raises(ScaleRefused, match="--min 4 is above data's max of 3"):
        scale(_settings(tmp_path), "data", Bounds(4, None))
    bounds, _ = scale(_settings(tmp_path), "data", None)
    assert bounds["DataService"] == {"min": 1, "max": 2}
    assert json.loads((tmp_path / "scale.json").read_text()) == {}


def test_a_fixed_size_app_takes_a_count_not_a_range(tmp_path: Path) -> None:
    with pytest.raises(ScaleRefused, match="audit runs a fixed number of replicas, not a range: give --replicas N"):
        scale(_settings(tmp_path), "audit", Bounds(1, 2))
    assert not (tmp_path / "scale.json").exists()  # a refused request records nothing
    bounds, _ = scale(_settings(tmp_path), "audit", Bounds(2, 2))
    assert bounds == {"AuditService": {"min": 2, "max": 2}}


def test_the_report_is_one_line_saying_whether_the_system_has_the_bounds() -> None:
    bounds = {"DataService": {"min": 1, "max": 2}, "DataProcessing": {"min": 1, "max": 2}}
    assert scale_report("data", bounds, applied=True, reset=False) == (
        "data: DataService 1..2, DataProcessing 1..2 replicas, running"
    )
    line = scale_report("data", bounds, applied=False, reset=True)
    assert line.startswith("data: record dropped; ") and "applied at the next `strata up`" in line
