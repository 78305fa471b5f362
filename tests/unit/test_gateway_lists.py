"""The gateway's own lists of services agree with the registry, so a component cannot be half added.

The gateway names its services in code, as the FastAPI template's ``api/main.py`` names its routers: spelt out, each
list reads plainly where it is used. They are

- the ``App`` literal of the routing table (``gateway/_access.py``): every component's name, and no other;
- ``ServiceClients`` (``gateway/_deps.py``): a client of each deployment reached by handle (a service's
  ``deployment`` and its ``workers``), each field named after a component holding that component's client;
- the routers included by ``gateway/_deployment.py`` and the OpenAPI tags of ``gateway/_openapi.py``: each route
  has one declared tag, a route the routing table sends to a service is tagged with that service (it lives in the
  service's router), every tag tags a route, and a tag names a component or is one of ``GATEWAY_ONLY_TAGS``.

Each check is a function listing what disagrees, given the registry (and the gateway's lists); the tests at the end
hand it a registry with a component added or removed, or a list with a slip, and see it name the gap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields, replace
from typing import get_args, get_type_hints

import pytest
from fastapi.routing import APIRoute
from starlette.datastructures import State

from strata.contracts import ServiceClient
from strata.schemas import REGISTRY, ServiceSpec
from strata.serve_apps.gateway import api
from strata.serve_apps.gateway._access import ROUTE_TABLE, ROUTES, App
from strata.serve_apps.gateway._deps import ServiceClients, service_clients
from strata.serve_apps.gateway._openapi import build_openapi

GATEWAY = "gateway"
GATEWAY_ONLY_TAGS = {"operations": "probes and documents, answered by the gateway itself"}
"""OpenAPI tags that name no component, each with what it groups."""
BILLING = ServiceSpec(
    name="billing", deployment="BillingService", package="strata.serve_apps.billing", description="registered only"
)
"""A component added to the registry and nowhere else."""

RouteTags = tuple[str, str, Sequence[str], str | None]
"""A documented route: method, path, its tags and the component the routing table sends it to (``None``: no row)."""


def app_literal_gaps(registry: Iterable[ServiceSpec], literal: Iterable[str]) -> list[str]:
    """How the routing table's ``App`` literal and the registry's names differ."""
    known = {spec.name for spec in registry}
    named = set(literal)
    return [f"App lacks {name!r}" for name in sorted(known - named)] + [
        f"App names {name!r}, not a component" for name in sorted(named - known)
    ]


def client_gaps(registry: Iterable[ServiceSpec], clients: Mapping[str, type[ServiceClient]]) -> list[str]:
    """How the gateway's clients (field -> client class) and the deployments reached by handle differ."""
    services = {spec.name: spec for spec in registry if spec.route_prefix is None}
    gaps = []
    called = set()
    for field, client in clients.items():
        spec = services.get(client.app)
        if spec is None:
            gaps.append(f"{field}: {client.__name__} calls {client.app!r}, not a service of the registry")
            continue
        deployment = client.deployment or spec.deployment
        called.add((spec.name, deployment))
        if deployment not in (spec.deployment, *spec.workers):
            gaps.append(f"{field}: {client.__name__} calls {deployment!r}, not a deployment of {spec.name}")
        if field in services and (client.app, deployment) != (field, services[field].deployment):
            gaps.append(f"{field}: holds {client.__name__}, not the {field} service's client")
    for spec in services.values():
        gaps += [
            f"no client of {spec.name}'s {deployment}"
            for deployment in (spec.deployment, *spec.workers)
            if (spec.name, deployment) not in called
        ]
    return gaps


def tag_gaps(
    registry: Iterable[ServiceSpec], declared: Sequence[str], routes: Iterable[RouteTags], table_apps: Iterable[str]
) -> list[str]:
    """How the OpenAPI tags, the documented routes' tags and the components of the routing table disagree."""
    known = {spec.name for spec in registry}
    gaps = [
        f"tag {tag!r} names no component and is no gateway-only tag"
        for tag in declared
        if tag not in known and tag not in GATEWAY_ONLY_TAGS
    ]
    used = set()
    for method, path, tags, app in routes:
        if len(tags) != 1:
            gaps.append(f"{method} {path} has the tags {list(tags)}, not one")
            continue
        (tag,) = tags
        used.add(tag)
        if tag not in declared:
            gaps.append(f"{method} {path}: its tag {tag!r} is not declared")
        if app not in (None, GATEWAY) and tag != app:
            gaps.append(f"{method} {path}: served by {app}, tagged {tag!r} (not in {app}'s router)")
    gaps += [f"tag {tag!r} tags no route" for tag in declared if tag not in used]
    gaps += [
        f"the routing table sends routes to {app}, but no route is tagged {app!r}: is its router included?"
        for app in sorted(set(table_apps) - {GATEWAY} - used)
    ]
    return gaps


def gateway_clients() -> dict[str, type[ServiceClient]]:
    """``ServiceClients``' fields and their client classes."""
    hints = get_type_hints(ServiceClients)
    return {field.name: hints[field.name] for field in fields(ServiceClients)}


def _flatten(routes: list[object]) -> list[object]:
    flat: list[object] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        flat += _flatten(inner.routes) if inner is not None else [route]
    return flat


def documented_routes() -> list[RouteTags]:
    """Every route of the gateway's OpenAPI document, with its tags and its component in the routing table."""
    return [
        (
            method,
            route.path,
            [str(tag) for tag in route.tags],
            getattr(ROUTE_TABLE.get((method, route.path)), "app", None),
        )
        for route in _flatten(list(api.routes))
        if isinstance(route, APIRoute) and route.include_in_schema
        for method in sorted(route.methods or ())
    ]


def declared_tags() -> list[str]:
    api.openapi_schema = None
    return [tag["name"] for tag in build_openapi(api)["tags"]]


# --- The gateway's lists as they are ----------------------------------------------------------------------------------


def test_the_app_literal_names_exactly_the_registry_s_components() -> None:
    assert app_literal_gaps(REGISTRY, get_args(App)) == []


def test_the_gateway_has_one_client_of_each_deployment_reached_by_handle() -> None:
    clients = gateway_clients()
    assert client_gaps(REGISTRY, clients) == []
    made = service_clients(State())  # what the replica builds: each field holds the client its type names
    for field, client in clients.items():
        assert type(getattr(made, field)) is client, field


def test_every_openapi_tag_names_a_component_or_a_gateway_only_group_and_each_service_s_routes_carry_its_tag() -> None:
    assert tag_gaps(REGISTRY, declared_tags(), documented_routes(), (route.app for route in ROUTES)) == []


# --- Each check finds a component half added, or a slip in a list -----------------------------------------------------

WITHOUT_AUDIT = tuple(spec for spec in REGISTRY if spec.name != "audit")


@pytest.mark.parametrize(
    ("registry", "gap"),
    [((*REGISTRY, BILLING), "App lacks 'billing'"), (WITHOUT_AUDIT, "App names 'audit', not a component")],
    ids=["component added", "component removed"],
)
def test_the_app_literal_check_finds_a_component_it_does_not_name_or_one_gone(
    registry: tuple[ServiceSpec, ...], gap: str
) -> None:
    assert app_literal_gaps(registry, get_args(App)) == [gap]


def test_the_client_check_finds_a_missing_client_a_stray_one_and_a_field_holding_another_s() -> None:
    clients = gateway_clients()
    assert client_gaps((*REGISTRY, BILLING), clients) == ["no client of billing's BillingService"]
    assert client_gaps(WITHOUT_AUDIT, clients) == ["audit: AuditClient calls 'audit', not a service of the registry"]
    assert client_gaps(REGISTRY, {**clients, "audit": clients["users"]}) == [
        "audit: holds UsersClient, not the audit service's client",
        "no client of audit's AuditService",
    ]
    with_worker = [replace(spec, workers=("Reindexer",)) if spec.name == "users" else spec for spec in REGISTRY]
    assert client_gaps(with_worker, clients) == ["no client of users's Reindexer"]


def test_the_tag_check_finds_an_unknown_tag_an_unused_one_a_route_outside_its_router_and_a_router_left_out() -> None:
    declared, routes, table_apps = declared_tags(), documented_routes(), [route.app for route in ROUTES]
    assert tag_gaps(WITHOUT_AUDIT, declared, routes, table_apps) == [
        "tag 'audit' names no component and is no gateway-only tag"
    ]
    assert tag_gaps(REGISTRY, [*declared, "billing"], routes, table_apps) == [
        "tag 'billing' names no component and is no gateway-only tag",
        "tag 'billing' tags no route",
    ]
    assert tag_gaps(REGISTRY, declared, [*routes, ("GET", "/v1/invoices", ["data"], "billing")], table_apps) == [
        "GET /v1/invoices: served by billing, tagged 'data' (not in billing's router)"
    ]
    assert tag_gaps(REGISTRY, declared, [*routes, ("GET", "/v1/invoices", [], "data")], table_apps) == [
        "GET /v1/invoices has the tags [], not one"
    ]
    without_audit_router = [route for route in routes if route[2] != ["audit"]]
    assert tag_gaps(REGISTRY, declared, without_audit_router, table_apps) == [
        "tag 'audit' tags no route",
        "the routing table sends routes to audit, but no route is tagged 'audit': is its router included?",
    ]
