"""The aggregated OpenAPI document against the running system, and a short schemathesis run over it.

Must show 7: ``/openapi.json`` covers every route of the routing table (and
of the app); schemathesis, authenticated as an administrator (every
permission), sends schema-valid and schema-violating requests to every
operation and finds no 5xx.

The data routes (issue 11, Must show 9): documented with their headers (ETag,
Location; If-Match, If-None-Match, Idempotency-Key) and 304/412/428 answers;
schemathesis' stateful run follows the links from the create answers (a
collection, then its items, with their ETags as If-Match) and finds no 5xx.

Bounded: ``MAX_EXAMPLES`` positive and as many negative examples per operation,
``STATEFUL_EXAMPLES`` scenarios of at most ``STATEFUL_STEPS`` calls, no
shrinking, a fixed seed. Left out of the run: ``POST /v1/auth/logout-all``,
which would end the sessions of the very token the run uses (it has its own
tests in test_identity_http.py and test_authorization.py).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import jwt
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from strata.contracts import UsersClient
from strata.schemas import UserNotFound
from strata.serve_apps.gateway import api
from strata.serve_apps.gateway._access import PUBLIC, ROUTES
from tests.conftest import System

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 10
STATEFUL_EXAMPLES = 15
STATEFUL_STEPS = 8
EXCLUDED = {("POST", "/v1/auth/logout-all")}
DOCUMENTS = {("GET", "/openapi.json"), ("HEAD", "/openapi.json"), ("GET", "/docs"), ("GET", "/docs/assets/{name}")}
"""Routes that serve the documentation itself (in the table, not operations of the API)."""


@pytest.fixture(scope="module")
def document(system: System) -> dict[str, Any]:
    with system.client() as client:
        response = client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def _operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("get", "put", "post", "delete", "patch", "head", "options")
    }


def _flatten(routes: list[Any]) -> list[Any]:
    flat = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        flat += _flatten(inner.routes) if inner is not None else [route]
    return flat


def test_the_document_covers_every_route(document: dict[str, Any]) -> None:
    operations = _operations(document)
    table = {(route.method, route.path): route for route in ROUTES}
    assert set(operations) == set(table) - DOCUMENTS
    app_routes = {
        (method, route.path)
        for route in _flatten(list(api.routes))
        if getattr(route, "include_in_schema", False)
        for method in getattr(route, "methods", ())
    }
    assert set(operations) == app_routes
    for key, operation in operations.items():
        assert (operation.get("security") == [{"bearerAuth": []}]) is (table[key].permission != PUBLIC), key
        assert "504" in operation["responses"], key
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert {"type", "title", "status"} <= set(document["components"]["schemas"]["Problem"]["properties"])


def _admin_headers(system: System) -> dict[str, str]:
    """Bearer headers of a new account made administrator (as an operator would, through the users service)."""
    email = f"openapi-admin-{uuid.uuid4().hex[:10]}@example.com"
    password = system.remember_secret(f"OpenApi-Admin-{uuid.uuid4().hex[:12]}")
    with system.client() as client:
        registered = client.post("/v1/auth/register", json={"email": email, "password": password})
        assert registered.status_code == 201, registered.text
        user_id = registered.json()["user_id"]
        deadline = time.monotonic() + 60
        while True:  # the profile comes from the `registered` event
            try:
                asyncio.run(UsersClient().get_user(user_id))
                break
            except UserNotFound:
                assert time.monotonic() < deadline, "the profile never appeared"
                time.sleep(0.2)
        asyncio.run(UsersClient().set_roles(user_id, ["admin"], request_id="req-openapi-admin", actor="test-operator"))
        while True:  # the role reaches the auth service by an event; a token of the same second is refused
            tokens = client.post("/v1/auth/login", json={"email": email, "password": password}).json()
            system.remember_secret(tokens["access_token"])
            system.remember_secret(tokens["refresh_token"])
            headers = {"Authorization": f"Bearer {tokens['access_token']}"}
            roles = jwt.decode(tokens["access_token"], options={"verify_signature": False})["roles"]
            if roles == ["admin"] and client.get("/v1/users", headers=headers).status_code == 200:
                return headers
            assert time.monotonic() < deadline, "the admin role never reached the auth service"
            time.sleep(0.5)


def test_schemathesis_finds_no_server_error(
    system: System, ray_driver: None, document: dict[str, Any], record_property: Any
) -> None:
    headers = _admin_headers(system)
    schema = schemathesis.openapi.from_dict(document)
    ca = system.runtime.ca_file
    verify: str | bool = str(ca) if ca is not None else True
    base_url = system.runtime.gateway_url
    failures: list[str] = []
    calls: dict[str, int] = {}
    statuses: dict[int, int] = {}
    started = time.monotonic()

    try:
        _run_schemathesis(schema, base_url, headers, verify, calls, statuses, failures)
    finally:
        system.forget_client_login_failures()  # its wrong passwords must not throttle later tests' logins
    elapsed = time.monotonic() - started
    record_property("schemathesis_calls", sum(calls.values()))
    record_property("schemathesis_operations", len(calls))
    record_property("schemathesis_statuses", dict(sorted(statuses.items())))
    record_property("schemathesis_seconds", round(elapsed, 1))
    print(f"schemathesis: {sum(calls.values())} calls over {len(calls)} operations in {elapsed:.1f}s; {statuses}")
    assert len(calls) == len(_operations(document)) - len(EXCLUDED)
    assert failures == [], "\n".join(failures)


def _run_schemathesis(
    schema: Any,
    base_url: str,
    headers: dict[str, str],
    verify: str | bool,
    calls: dict[str, int],
    statuses: dict[int, int],
    failures: list[str],
) -> None:
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in EXCLUDED:
            continue
        strategy = st.one_of(
            operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
            operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
        )

        @settings(
            max_examples=2 * MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def run(case: schemathesis.Case) -> None:
            response = case.call(base_url=base_url, headers=headers, verify=verify, timeout=30)
            calls[case.operation.label] = calls.get(case.operation.label, 0) + 1
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code >= 500:
                curl = case.as_curl_command(headers={"Authorization": "Bearer <admin token>"}, verify=False)
                failures.append(f"{response.status_code} {case.operation.label}: {response.text[:300]}\n  {curl}")

        run()


def test_the_docs_page_loads_the_document(system: System) -> None:
    with system.client() as client:
        docs = client.get("/docs")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    assert "SwaggerUIBundle" in docs.text and "/openapi.json" in docs.text


def test_the_docs_page_names_no_other_host_and_its_assets_answer(system: System) -> None:
    import re

    from strata.serve_apps.gateway._openapi import SWAGGER_ASSETS

    with system.client() as client:
        docs = client.get("/docs")
        assets = {path: client.get(path) for path in re.findall(r"""(?:src|href)=["']?(/[^"' >]+)""", docs.text)}

    assert re.findall(r"(?:https?:)?//[A-Za-z0-9.-]+", docs.text) == []
    assert {path: (r.status_code, r.headers["content-type"]) for path, r in assets.items()} == {
        f"/docs/assets/{name}": (200, content_type) for name, content_type in SWAGGER_ASSETS.items()
    }
    # The edge's CSP forbids framing only: it lets the page run its own script and load same-origin assets.
    assert docs.headers["content-security-policy"] == "frame-ancestors 'none'"


_DATA = {(route.method, route.path) for route in ROUTES if route.app == "data"}
_SINGLE_GETS = {
    "/v1/collections/{collection_id}",
    "/v1/collections/{collection_id}/stats",
    "/v1/collections/{collection_id}/members/{user_id}",
    "/v1/collections/{collection_id}/items/{item_id}",
}
_MUST_MATCH = {
    ("PATCH", "/v1/collections/{collection_id}"),
    ("DELETE", "/v1/collections/{collection_id}"),
    ("PUT", "/v1/collections/{collection_id}/items/{item_id}"),
    ("PATCH", "/v1/collections/{collection_id}/items/{item_id}"),
    ("DELETE", "/v1/collections/{collection_id}/items/{item_id}"),
}


def _header_parameters(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "header"}


def test_the_data_routes_document_their_headers_conditional_answers_links_and_limits(
    document: dict[str, Any], system: System
) -> None:
    operations = _operations(document)
    assert set(operations) >= _DATA and len(_DATA) == 17
    for method, path in _DATA:
        operation = operations[(method, path)]
        responses, headers = operation["responses"], _header_parameters(operation)
        if method == "GET" and path in _SINGLE_GETS:
            assert "ETag" in responses["200"]["headers"], path
            assert set(responses["304"]["headers"]) >= {"ETag"}, path
            assert headers["If-None-Match"]["description"], path
        if (method, path) in _MUST_MATCH:
            assert {"412", "428"} <= set(responses), (method, path)
            assert "Required" in headers["If-Match"]["description"], (method, path)
        if method == "POST":
            assert headers["Idempotency-Key"]["description"] and "409" in responses, path
        if method == "PATCH":
            assert set(operation["requestBody"]["content"]) == {"application/merge-patch+json", "application/json"}
            assert "415" in responses
        if method == "GET" and path.endswith(("/members", "/items", "/collections")):
            assert "400" in responses, path  # an invalid cursor
            limit = next(p for p in operation["parameters"] if p["name"] == "limit")
            assert limit["schema"]["maximum"] == system.settings.data_max_page_size
    for create, follows in (("/v1/collections", "getCollection"), ("/v1/collections/{collection_id}/items", "getItem")):
        created = operations[("POST", create)]["responses"]["201"]
        assert {"Location", "ETag"} <= set(created["headers"])
        assert follows in {link["operationId"] for link in created["links"].values()}
    batch = document["components"]["schemas"]["ItemBatchCreate"]["properties"]["items"]
    assert batch["maxItems"] == system.settings.data_max_batch_items
    assert f"{system.settings.idempotency_key_ttl_s} s" in document["info"]["description"]


def test_a_stateful_schemathesis_run_over_the_data_routes_follows_links_and_finds_no_server_error(
    system: System, ray_driver: None, document: dict[str, Any], record_property: Any
) -> None:
    headers = _admin_headers(system)  # admin: data:write to create, data:admin to read everything
    schema = schemathesis.openapi.from_dict(document).include(path_regex="^/v1/collections")
    # Valid requests only, sent with the admin's token: the links are followed from real answers (a negative case,
    # or a generated Authorization header, would end each scenario at its first step; the stateless run above
    # covers those).
    schema.config.generation.modes = [schemathesis.GenerationMode.POSITIVE]
    schema.config.generation.with_security_parameters = False
    ca = system.runtime.ca_file
    verify: str | bool = str(ca) if ca is not None else True
    base_url = system.runtime.gateway_url
    failures: list[str] = []
    statuses: dict[str, dict[int, int]] = {}

    class DataRoutes(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            sent = dict(headers)
            if case.headers and "Idempotency-Key" in case.headers:
                # Each scenario must meet the same server whatever ran before it: Hypothesis replays a scenario's
                # prefix and fails as flaky if an answer differs. A generated key seen in an earlier scenario would
                # replay that one's answer or be refused as reused, so every POST gets a key of its own (the
                # idempotency tests prove replays).
                sent["Idempotency-Key"] = uuid.uuid4().hex
            return {"base_url": base_url, "headers": sent, "verify": verify, "timeout": 30}

        def validate_response(self, response: Any, case: schemathesis.Case, **kwargs: Any) -> None:
            label = f"{case.operation.method.upper()} {case.operation.path}"
            counts = statuses.setdefault(label, {})
            counts[response.status_code] = counts.get(response.status_code, 0) + 1
            if response.status_code >= 500:
                curl = case.as_curl_command(headers={"Authorization": "Bearer <admin token>"}, verify=False)
                failures.append(f"{response.status_code} {label}: {response.text[:300]}\n  {curl}")

    DataRoutes.run(
        settings=settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=STATEFUL_STEPS,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
    )
    record_property("stateful_statuses", statuses)
    print(f"stateful schemathesis over the data routes: {statuses}")
    assert failures == [], "\n".join(failures)
    followed = {label for label, counts in statuses.items() if any(200 <= code < 300 for code in counts)}
    # The links were followed: operations on a created collection and item answered successfully.
    assert {"POST /v1/collections", "GET /v1/collections/{collection_id}"} <= followed, statuses
    assert any(label.startswith("GET /v1/collections/{collection_id}/items") for label in followed), statuses
