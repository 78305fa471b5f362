"""The registry of components is the one list: serve.yaml, the package data, the import contracts, the event
catalogue and the deployments themselves must agree with it."""

from __future__ import annotations

import fnmatch
import importlib
import inspect
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from ray.serve.deployment import Application

from strata.schemas import REGISTRY, Settings, consumer_groups, defined_permissions, schema_owners, service_spec
from strata.schemas.events import EVENT_TYPES

ROOT = Path(__file__).resolve().parents[2]
SERVE_YAML = ROOT / "cluster" / "serve.yaml"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SERVICES = sorted(spec.package for spec in REGISTRY if spec.route_prefix is None)


def _package_dir(package: str) -> Path:
    """The folder of ``package`` in the tree (``strata.serve_apps.users`` -> ``serve_apps/users``)."""
    return ROOT.joinpath(*package.split(".")[1:])


def test_serve_yaml_lists_exactly_the_registry_s_apps_with_their_import_path_route_and_deployment() -> None:
    config = yaml.safe_load(SERVE_YAML.read_text())
    apps = {app["name"]: app for app in config["applications"]}
    assert list(apps) == [spec.name for spec in REGISTRY]
    for spec in REGISTRY:
        app = apps[spec.name]
        assert app["import_path"] == spec.import_path, spec.name
        assert app.get("route_prefix") == spec.route_prefix, spec.name
        assert [d["name"] for d in app["deployments"]] == [spec.deployment, *spec.workers], spec.name


@pytest.mark.parametrize("spec", REGISTRY, ids=lambda spec: spec.name)
def test_each_app_builds_the_deployments_its_spec_names(spec) -> None:
    module, _, attribute = spec.import_path.partition(":")
    application = getattr(importlib.import_module(module), attribute)
    ingress = application._bound_deployment
    inner = [arg._bound_deployment for arg in ingress.init_args if isinstance(arg, Application)]
    assert (ingress.name, *(d.name for d in inner)) == (spec.entry_deployment or spec.deployment, *inner_names(spec))
    service_class = (inner[0] if inner else ingress).func_or_class
    assert getattr(service_class, "service", spec.name) == spec.name


def inner_names(spec) -> tuple[str, ...]:
    return () if spec.entry_deployment is None else (spec.deployment, *spec.workers)


@pytest.mark.parametrize("spec", schema_owners(), ids=lambda spec: spec.name)
def test_every_schema_owner_ships_its_migrations_as_package_data(spec) -> None:
    migrations = sorted((_package_dir(spec.package) / "migrations").glob("*.sql"))
    assert migrations, f"{spec.package} has no migrations/*.sql"
    package_data: dict[str, list[str]] = PYPROJECT["tool"]["setuptools"]["package-data"]
    patterns = [*package_data.get("*", []), *package_data.get(spec.package, [])]
    for path in migrations:
        relative = path.relative_to(_package_dir(spec.package)).as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), f"{relative} of {spec.package}"


def test_setuptools_finds_every_registered_package_through_strata_s_links() -> None:
    assert PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"] == ["strata", "strata.*"]
    for spec in REGISTRY:
        linked = ROOT / "strata" / Path(*spec.package.split(".")[1:]) / "__init__.py"
        assert linked.is_file(), linked


def test_the_import_contracts_name_exactly_the_registry_s_services() -> None:
    contracts = PYPROJECT["tool"]["importlinter"]["contracts"]
    (independence,) = (c for c in contracts if c["type"] == "independence")
    assert sorted(independence["modules"]) == SERVICES
    (no_gateway,) = (c for c in contracts if c.get("forbidden_modules") == ["strata.serve_apps.gateway"])
    assert sorted(no_gateway["source_modules"]) == SERVICES
    # Callers (the gateway, the contracts) may import none of them.
    (callers,) = (
        c
        for c in contracts
        if c["type"] == "forbidden"
        and "strata.contracts" in c["source_modules"]
        and set(c["forbidden_modules"]) & set(SERVICES)
    )
    assert sorted(callers["forbidden_modules"]) == SERVICES


def test_every_event_topic_is_published_by_the_service_its_type_names_and_by_no_other() -> None:
    for event in EVENT_TYPES.values():
        publishers = [spec.name for spec in REGISTRY if event.topic in spec.publishes]
        assert publishers == [event.service], event.type
        assert service_spec(event.service).outbox, event.type
    published = {topic for spec in REGISTRY for topic in spec.publishes}
    assert published == {event.topic for event in EVENT_TYPES.values()}


def test_every_consumer_group_reads_published_topics_with_an_async_handler_and_groups_are_unique() -> None:
    published = {topic for spec in REGISTRY for topic in spec.publishes}
    groups = [group.group for _, group in consumer_groups()]
    assert len(groups) == len(set(groups))
    for spec, group in consumer_groups():
        assert set(group.topics) <= published, group.group
        assert spec.owns_schema, f"{group.group}: its inbox lives in {spec.name}'s schema"
        module, _, name = group.handler.partition(":")
        handler = getattr(importlib.import_module(module), name)
        assert inspect.iscoroutinefunction(handler), group.handler


def test_settings_know_exactly_the_registered_components() -> None:
    Settings(_env_file=None, db_backends={spec.name: "actors" for spec in schema_owners()})
    Settings(_env_file=None, min_replicas={spec.name: 1 for spec in REGISTRY})
    Settings(_env_file=None, max_replicas={spec.name: 64 for spec in REGISTRY})
    with pytest.raises(ValueError, match="unknown service"):
        Settings(_env_file=None, db_backends={"gateway": "actors"})
    with pytest.raises(ValueError, match="unknown app"):
        Settings(_env_file=None, min_replicas={"billing": 1})


def test_an_unknown_component_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown component 'billing'; known: \['audit', 'auth'"):
        service_spec("billing")


def test_permissions_are_defined_once_and_named_resource_action() -> None:
    names = [permission.name for _, permission in defined_permissions()]
    assert names and len(names) == len(set(names)), names
    for spec, permission in defined_permissions():
        assert re.fullmatch(r"[a-z][a-z0-9_]*:[a-z][a-z0-9_]*", permission.name), (spec.name, permission.name)
        assert permission.description.endswith("."), (spec.name, permission.name)


def test_every_route_s_permission_is_one_a_component_defines() -> None:
    from strata.serve_apps.gateway._access import AUTHENTICATED, OR_SELF, PUBLIC, ROUTES
    from strata.serve_apps.gateway._readiness import DETAILS_PERMISSION

    defined = {permission.name for _, permission in defined_permissions()}
    required = {r.permission.removesuffix(OR_SELF) for r in ROUTES if r.permission not in (PUBLIC, AUTHENTICATED)}
    assert required <= defined, sorted(required - defined)
    assert DETAILS_PERMISSION in defined  # /readyz's details ask for it in code, not in the routing table
