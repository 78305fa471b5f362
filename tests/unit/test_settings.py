from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from strata.cluster import settings_env
from strata.schemas import Settings


def test_defaults_run_everything_embedded_on_loopback() -> None:
    settings = Settings(_env_file=None)
    assert settings.embedded_postgres and settings.embedded_kafka and settings.local_ray
    assert settings.gateway_host == "127.0.0.1"
    assert settings.data_dir == Path(".strata")
    assert settings.db_backend("data") == "replica"


def test_every_field_is_described() -> None:
    missing = [name for name, field in Settings.model_fields.items() if not field.description]
    assert missing == []


def test_environment_variables_use_the_strata_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATA_GATEWAY_PORT", "9123")
    monkeypatch.setenv("STRATA_DB_BACKENDS", '{"data": "actors"}')
    settings = Settings(_env_file=None)
    assert settings.gateway_port == 9123
    assert settings.db_backend("data") == "actors"
    assert settings.db_backend("users") == "replica"


def test_unknown_service_in_db_backends_is_named() -> None:
    with pytest.raises(ValidationError, match="billing"):
        Settings(_env_file=None, db_backends={"billing": "actors"})  # type: ignore[arg-type]


def test_pool_actor_budget_must_cover_every_actor() -> None:
    with pytest.raises(ValidationError, match="db_pool_actor_connections=2 is smaller than db_pool_actors=3"):
        Settings(_env_file=None, db_pool_actors=3, db_pool_actor_connections=2)


def test_external_servers_switch_off_the_embedded_ones() -> None:
    settings = Settings(
        _env_file=None,
        database_url="postgresql://u:p@db.internal:5432/app",  # type: ignore[arg-type]
        kafka_bootstrap_servers="k1:9092",
        ray_address="10.0.0.1:6379",
    )
    assert not settings.embedded_postgres and not settings.embedded_kafka and not settings.local_ray


def test_settings_env_reproduces_the_settings_in_another_process(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Settings(
        _env_file=None,
        database_url="postgresql://u:p@127.0.0.1:5/db",  # type: ignore[arg-type]
        secret_key="s3cret",  # type: ignore[arg-type]
        db_backends={"data": "actors"},
        gateway_port=8111,
    )
    for name, value in settings_env(original).items():
        monkeypatch.setenv(name, value)
    assert Settings(_env_file=None) == original


def test_ray_workers_get_the_admin_dsn_without_its_password() -> None:
    from strata.cluster._runtime import worker_env

    settings = Settings(
        _env_file=None,
        database_url="postgresql://strata_admin:adminpw@127.0.0.1:5432/strata",  # type: ignore[arg-type]
        secret_key="k",  # type: ignore[arg-type]
    )
    env = worker_env(settings)
    assert env["STRATA_DATABASE_URL"] == "postgresql://strata_admin@127.0.0.1:5432/strata"
    assert not any("adminpw" in value for value in env.values())


def test_settings_survive_the_trip_through_the_environment_of_ray_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    from strata.cluster import settings_env

    original = Settings(
        _env_file=None,
        secret_key="s" * 32,
        db_backends={"data": "actors"},
        min_replicas={"gateway": 2},
        max_replicas={"data": 4},
        cors_allow_origins=["https://app.example.com"],
        ingress="python",
        tls_certfile="/etc/strata/cert.pem",
        tls_keyfile="/etc/strata/key.pem",
    )
    for name, value in settings_env(original).items():
        monkeypatch.setenv(name, value)
    assert Settings(_env_file=None) == original


def test_replica_bounds_come_as_json_per_app_and_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATA_MIN_REPLICAS", '{"gateway": 2}')
    monkeypatch.setenv("STRATA_MAX_REPLICAS", '{"gateway": 4, "data": 64}')
    settings = Settings(_env_file=None)
    assert settings.min_replicas == {"gateway": 2}
    assert settings.max_replicas == {"gateway": 4, "data": 64}
    for field in ("min_replicas", "max_replicas"):
        with pytest.raises(ValueError, match=rf"unknown app\(s\) \['billing'\] in {field}; known: \["):
            Settings(_env_file=None, **{field: {"billing": 1}})
        with pytest.raises(ValueError, match=rf"{field} must be between 1 and 64: {{'data': 0}}"):
            Settings(_env_file=None, **{field: {"data": 0}})
        with pytest.raises(ValueError, match=rf"{field} must be between 1 and 64: {{'data': 65}}"):
            Settings(_env_file=None, **{field: {"data": 65}})
