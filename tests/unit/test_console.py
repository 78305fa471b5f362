"""The console script finds the cluster's Ray token before anything imports Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from strata._console import _cluster_token


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("STRATA_RAY_AUTH_TOKEN", "STRATA_RAY_ADDRESS", "STRATA_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    monkeypatch.setenv("STRATA_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def test_the_local_head_s_token_comes_from_the_data_dir(clean_env: Path) -> None:
    clean_env.mkdir()
    (clean_env / "secrets.json").write_text(json.dumps({"ray_auth_token": "t0ken", "secret_key": "s"}))
    assert _cluster_token() == "t0ken"


def test_nothing_started_yet_means_no_token(clean_env: Path) -> None:
    assert _cluster_token() is None


def test_a_configured_token_wins(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env.mkdir()
    (clean_env / "secrets.json").write_text(json.dumps({"ray_auth_token": "from-the-data-dir"}))
    monkeypatch.setenv("STRATA_RAY_AUTH_TOKEN", "configured")
    assert _cluster_token() == "configured"


def test_an_external_cluster_s_token_is_not_taken_from_the_local_data_dir(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean_env.mkdir()
    (clean_env / "secrets.json").write_text(json.dumps({"ray_auth_token": "local-head-token"}))
    monkeypatch.setenv("STRATA_RAY_ADDRESS", "10.0.0.5:6379")
    assert _cluster_token() is None


def test_invalid_settings_leave_the_error_to_the_cli(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATA_DB_BACKENDS", '{"billing": "actors"}')
    assert _cluster_token() is None
