"""No password, token or key material in any log line the system wrote during the suite.

Runs last (after every test that handled a secret) and reads every log file:
Ray's session logs (Serve, workers, raylet, GCS, dashboard), PostgreSQL's and Kafka's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from strata.actors.kafka import principal_password
from strata.actors.postgres import service_password
from strata.cluster._ray import temp_dir_for
from strata.cluster._runtime import secrets_of
from strata.schemas import REGISTRY, component_secrets, schema_owners
from tests.conftest import SESSION_RAY_TOKEN, System

pytestmark = [pytest.mark.integration, pytest.mark.last]


def _log_files(system: System) -> list[Path]:
    data_dir = system.settings.data_dir.resolve()
    files = [p for p in temp_dir_for(data_dir).rglob("*") if p.is_file() and p.suffix in {".log", ".out", ".err", ""}]
    files += [p for p in (data_dir / "postgres").glob("*.log")]
    files += [p for p in (data_dir / "kafka").glob("*.log*")] + [
        data_dir / "kafka" / "kafka.out",
        data_dir / "ray-start.log",
        data_dir / "tls-front.log",
    ]
    return [p for p in files if p.exists() and p.stat().st_size < 200 * 1024 * 1024]


def test_no_secret_appears_in_any_log_line(system: System) -> None:
    settings = system.runtime.settings
    assert settings.secret_key is not None and settings.database_url is not None
    secret_key = settings.secret_key.get_secret_value()
    secrets = {
        secret_key,
        settings.database_url.get_secret_value().split(":")[2].split("@")[0],  # the admin password
        SESSION_RAY_TOKEN,
        settings.edge_token(),  # the TLS front's proof to the gateway
        *(service_password(secret_key, service) for service in (spec.name for spec in schema_owners())),
        *(principal_password(secret_key, spec.name) for spec in REGISTRY),  # the Kafka principals'
        # Every component's derived secrets in the form its credentials file hands them over (hex).
        *(settings.secret(label).hex() for spec in REGISTRY for label in component_secrets(spec.name)),
        *(
            secrets_of(system.settings.data_dir.resolve())[name]
            for name in ("kafka_admin_password", "kafka_broker_password")
        ),
        *system.secrets,
    }
    secrets = {s for s in secrets if len(s) >= 8}
    files = _log_files(system)
    assert len(files) > 10, "the scan must see the system's logs"
    leaks = []
    for path in files:
        text = path.read_text(errors="replace")
        leaks += [f"{path.name}: {secret[:4]}..." for secret in secrets if secret in text]
    assert leaks == []
