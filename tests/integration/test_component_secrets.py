"""Each Serve replica and strata actor holds its own component's secrets, never the master secret.

Read from the processes themselves (``/proc/<pid>/environ``) and from the one file each is pointed at: code that
runs in a users replica finds the users role's and principal's passwords there, and none of auth's signing-key
encryption key, the gateway's edge token or another component's passwords.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from strata.cluster._serve import application_details
from strata.schemas import REGISTRY, component_secrets, credentials_file_of
from tests.conftest import System

pytestmark = pytest.mark.integration

_ACTOR = re.compile(r"^strata-(?:relay|consumer|pg)-([a-z]+)-\d+$")


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (entry.decode(errors="replace").split("=", 1) for entry in raw.split(b"\0") if b"=" in entry)
    return {name: value for name, value in pairs}


def _every_secret(system: System) -> dict[tuple[str, str], set[str]]:
    """``{(component, label): the forms its value takes}``: hex as handed over, and a role password's base64."""
    from strata.actors.postgres import service_password

    master = system.runtime.settings.secret_key
    assert master is not None
    forms: dict[tuple[str, str], set[str]] = {}
    for spec in REGISTRY:
        for label in component_secrets(spec.name):
            value = system.runtime.settings.secret(label)
            forms[(spec.name, label)] = {value.hex()}
        if spec.owns_schema:
            forms[(spec.name, f"postgres-role:{spec.name}")].add(service_password(master.get_secret_value(), spec.name))
    return forms


def _check(system: System, pid: int, component: str, what: str) -> None:
    settings = system.runtime.settings
    assert settings.secret_key is not None
    env = _environ(pid)
    text = "\0".join(f"{k}={v}" for k, v in env.items())
    assert "STRATA_SECRET_KEY" not in env, f"{what} ({pid}) holds STRATA_SECRET_KEY"
    assert settings.secret_key.get_secret_value() not in text, f"{what} ({pid}) holds the master secret"
    own_file = credentials_file_of(settings.data_dir, component)
    # A pool actor a script made (test_database's) has no pointer and reads its service's file by name.
    pointer = env.get("STRATA_CREDENTIALS_FILE", str(own_file) if what.startswith("strata-pg-") else None)
    assert pointer == str(own_file), f"{what} ({pid}) is not pointed at its own secrets"
    held = json.loads(own_file.read_text())
    assert sorted(held) == sorted(component_secrets(component))
    for (owner, label), forms in _every_secret(system).items():
        if owner == component or label in held:
            continue
        leaked = [form[:4] for form in forms if form in text]
        assert leaked == [], f"{what} ({pid}) holds {owner}'s {label}"
        assert not forms & set(held.values()), f"{component}'s file holds {owner}'s {label}"


def test_every_serve_replica_holds_its_own_component_s_secrets_and_no_others(system: System) -> None:
    details = application_details(system.runtime.dashboard_url, system.runtime.ray_auth_token)
    checked: dict[str, int] = {}
    for app, info in details.items():
        for deployment in (info.get("deployments") or {}).values():
            for replica in deployment.get("replicas") or []:
                if replica.get("state") != "RUNNING" or not isinstance(replica.get("pid"), int):
                    continue
                _check(system, replica["pid"], app, f"{app} replica {replica.get('replica_id')}")
                checked[app] = checked.get(app, 0) + 1
    # Every app, the CPU-bound DataProcessing's replicas among data's.
    assert sorted(checked) == sorted(spec.name for spec in REGISTRY), checked
    assert checked["data"] >= 2, checked


def test_relays_consumers_and_pool_actors_hold_their_component_s_secrets(system: System, ray_driver: None) -> None:
    from ray.util.state import list_actors

    checked = []
    for actor in list_actors(address=system.runtime.ray_address, filters=[("state", "=", "ALIVE")], limit=1000):
        match = _ACTOR.match(actor.name or "")
        if match is None or not actor.pid:
            continue
        _check(system, actor.pid, match.group(1), actor.name)
        checked.append(actor.name)
    assert any(name.startswith("strata-relay-") for name in checked), checked
    assert any(name.startswith("strata-consumer-") for name in checked), checked


def test_the_credentials_files_are_private(system: System) -> None:
    directory = credentials_file_of(system.runtime.settings.data_dir, "auth").parent
    assert directory.stat().st_mode & 0o777 == 0o700
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in directory.iterdir())
