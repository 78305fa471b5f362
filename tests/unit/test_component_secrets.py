"""Each component is handed its own derived secrets and never the master secret; every derived value is the one
strata always derived, so an existing data dir keeps its passwords, signing keys and tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr
from ray.serve.schema import ServeDeploySchema

from strata.actors.kafka import client_options, principal_password
from strata.actors.postgres import service_dsn, service_password
from strata.cluster._runtime import worker_env, write_credentials
from strata.cluster._serve import serve_config
from strata.schemas import (
    CONSISTENCY_TOKEN_KEY,
    EDGE_TOKEN,
    REFRESH_CHILD,
    REGISTRY,
    SIGNING_KEY_ENCRYPTION,
    SecretNotHeld,
    Settings,
    component_secrets,
    derive_secret,
    kafka_principal_secret,
    key_secret,
    postgres_role_secret,
)
from strata.serve_apps.auth._keys import decrypt_private_key, encrypt_private_key, generate_private_key

MASTER = "m" * 43


def _master(tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path,
        secret_key=SecretStr(MASTER),
        database_url=SecretStr("postgresql://strata_admin:adminpw@127.0.0.1:5432/strata"),
        kafka_bootstrap_servers="127.0.0.1:9092",
        kafka_security_protocol="SASL_PLAINTEXT",
    )


def _worker(master: Settings, component: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a process of ``component`` builds: the Ray workers' environment plus its own file."""
    files = write_credentials(master)
    for name, value in worker_env(master).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("STRATA_CREDENTIALS_FILE", str(files[component]))
    return Settings(_env_file=None)


def test_every_derived_value_is_the_one_strata_always_derived() -> None:
    def old_hmac(label: bytes) -> bytes:
        return hmac.new(MASTER.encode(), label, hashlib.sha256).digest()

    assert service_password(MASTER, "users") == base64.urlsafe_b64encode(
        old_hmac(b"postgres-role:users")
    ).decode().rstrip("=")
    assert principal_password(MASTER, "users") == old_hmac(b"kafka-principal:users").hex()
    assert derive_secret(MASTER, key_secret("data-cursor")) == old_hmac(b"key:data-cursor")
    assert derive_secret(MASTER, EDGE_TOKEN) == old_hmac(b"edge-token")
    assert derive_secret(MASTER, REFRESH_CHILD) == old_hmac(b"strata refresh-token child v1")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"strata-auth-signing-key")
    assert derive_secret(MASTER, SIGNING_KEY_ENCRYPTION) == hkdf.derive(MASTER.encode())


def test_a_signing_key_encrypted_under_the_master_secret_decrypts_with_the_auth_replica_s_key() -> None:
    blob = encrypt_private_key(generate_private_key("EdDSA"), MASTER, "kid-1")  # as stored before
    assert decrypt_private_key(blob, derive_secret(MASTER, SIGNING_KEY_ENCRYPTION), "kid-1") is not None


def test_only_auth_holds_the_signing_key_encryption_key_and_only_the_gateway_the_edge_and_consistency_keys() -> None:
    holders = {label: [s.name for s in REGISTRY if label in component_secrets(s.name)] for label in
               (SIGNING_KEY_ENCRYPTION, REFRESH_CHILD, EDGE_TOKEN, key_secret("data-cursor"),
                CONSISTENCY_TOKEN_KEY)}  # fmt: skip
    assert holders == {
        SIGNING_KEY_ENCRYPTION: ["auth"],
        REFRESH_CHILD: ["auth"],
        EDGE_TOKEN: ["gateway"],
        key_secret("data-cursor"): ["data"],
        CONSISTENCY_TOKEN_KEY: ["gateway"],
    }
    for spec in REGISTRY:
        others = {kafka_principal_secret(o.name) for o in REGISTRY if o is not spec}
        others |= {postgres_role_secret(o.name) for o in REGISTRY if o is not spec}
        assert not others & set(component_secrets(spec.name)), spec.name


def test_ray_workers_get_no_master_secret(tmp_path: Path) -> None:
    env = worker_env(_master(tmp_path))
    assert "STRATA_SECRET_KEY" not in env
    assert not any(MASTER in value for value in env.values())


def test_a_users_process_has_its_own_passwords_and_is_refused_any_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    master = _master(tmp_path)
    users = _worker(master, "users", monkeypatch)
    assert users.secret_key is None
    assert service_dsn(users, "users") == service_dsn(master, "users")
    assert client_options(users, "users")["sasl_plain_password"] == principal_password(MASTER, "users")
    for label in (SIGNING_KEY_ENCRYPTION, EDGE_TOKEN, postgres_role_secret("auth"), kafka_principal_secret("data")):
        with pytest.raises(SecretNotHeld, match=label):
            users.secret(label)
    with pytest.raises(SecretNotHeld):
        service_dsn(users, "auth")


def test_the_auth_and_gateway_processes_have_their_own_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    master = _master(tmp_path)
    auth = _worker(master, "auth", monkeypatch)
    assert auth.secret(SIGNING_KEY_ENCRYPTION) == master.secret(SIGNING_KEY_ENCRYPTION)
    assert auth.secret(REFRESH_CHILD) == master.secret(REFRESH_CHILD)
    assert not auth.holds_secret(EDGE_TOKEN)
    gateway = _worker(master, "gateway", monkeypatch)
    assert gateway.edge_token() == master.edge_token()
    assert gateway.holds_secret(CONSISTENCY_TOKEN_KEY)  # what makes its replicas share one signer
    assert gateway.consistency_token_key() == master.consistency_token_key()
    assert not gateway.holds_secret(SIGNING_KEY_ENCRYPTION)


def test_the_credentials_files_are_private_and_hold_one_component_each(tmp_path: Path) -> None:
    files = write_credentials(_master(tmp_path))
    assert sorted(files) == sorted(spec.name for spec in REGISTRY)
    assert files["auth"].parent.stat().st_mode & 0o777 == 0o700
    for component, path in files.items():
        assert path.stat().st_mode & 0o777 == 0o600
        assert sorted(json.loads(path.read_text())) == sorted(component_secrets(component))
        assert MASTER not in path.read_text()


def test_each_app_is_pointed_at_its_own_credentials_in_its_runtime_env(tmp_path: Path) -> None:
    files = write_credentials(_master(tmp_path))
    config = serve_config(_master(tmp_path), credentials=files)
    ServeDeploySchema.model_validate(config)
    for app in config["applications"]:
        assert app["runtime_env"] == {"env_vars": {"STRATA_CREDENTIALS_FILE": str(files[app["name"]])}}
    assert "runtime_env" not in serve_config(_master(tmp_path))["applications"][0]


def test_an_actor_a_driver_made_reads_its_own_services_file_and_no_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    master = _master(tmp_path)
    write_credentials(master)
    for name, value in worker_env(master).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("STRATA_CREDENTIALS_FILE", raising=False)  # what a script's or a test's actor inherits
    audit = Settings.of_service("audit")
    assert service_dsn(audit, "audit") == service_dsn(master, "audit")
    assert client_options(audit, "audit")["sasl_plain_password"] == principal_password(MASTER, "audit")
    with pytest.raises(SecretNotHeld):
        service_dsn(audit, "users")
    # Made by one of its service's replicas, an actor keeps what it inherited.
    users = _worker(master, "users", monkeypatch)
    assert Settings.of_service("users").credentials_file == users.credentials_file
