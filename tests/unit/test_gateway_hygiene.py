"""The edge middleware and the OpenAPI document, in-process (no Ray, no services).

Small apps are built inline around :class:`RequestHygiene`; the gateway's own
``api`` answers what needs its routes and exception handlers (404, 405, 413).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from ray.serve import context as serve_context
from starlette.datastructures import Headers

from strata.serve_apps.gateway import api
from strata.serve_apps.gateway._access import AUTHENTICATED, PUBLIC, ROUTES
from strata.serve_apps.gateway._hygiene import (
    EdgePolicy,
    RequestHygiene,
    accepted_request_id,
    requested_deadline,
)
from strata.serve_apps.gateway._openapi import BEARER, build_openapi

PROBLEM = "application/problem+json"


class Recorder:
    def __init__(self) -> None:
        self.records: list[tuple[str, str, int, float]] = []

    def record(self, route: str, method: str, status: int, duration_s: float) -> None:
        self.records.append((route, method, status, duration_s))


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://t")


def _small_app(policy: EdgePolicy | None = None) -> tuple[FastAPI, dict[str, Any]]:
    """An app with a slow route, a failing route and a body-reading route, behind the edge middleware."""
    seen: dict[str, Any] = {"cancelled": False, "bodies": 0}
    app = FastAPI()
    app.add_middleware(RequestHygiene)
    if policy is not None:
        app.state.edge_policy = policy
    app.state.request_recorder = Recorder()

    @app.get("/slow/{n}")
    async def slow(n: int) -> dict[str, int]:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            seen["cancelled"] = True
            raise
        return {"n": n}

    @app.get("/boom")
    async def boom() -> dict[str, str]:
        raise RuntimeError("secret internals: strata.serve_apps.users._admin UsersService")

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        seen["bodies"] += 1
        return {"size": len(await request.body())}

    @app.get("/context")
    async def context() -> dict[str, str]:
        current = serve_context._serve_request_context.get()
        return {"serve_request_id": current.request_id if current is not None else ""}

    @app.get("/cached")
    async def cached() -> JSONResponse:
        return JSONResponse({}, headers={"Cache-Control": "public, max-age=60"})

    return app, seen


@pytest.fixture
def edge_policy() -> Iterator[None]:
    """Give the gateway's ``api`` a small policy (with CORS for one origin) for one test."""
    api.state.edge_policy = EdgePolicy(max_body_bytes=1024, deadline_s=5, cors_allow_origins=("https://app.test",))
    yield
    del api.state.edge_policy


# --- parsing --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, 10.0),
        ({"Request-Timeout": "2.5"}, 2.5),
        ({"Request-Timeout": "2.5s"}, 2.5),
        ({"Request-Timeout": "250ms"}, 0.25),
        ({"X-Request-Timeout": "1ms"}, 0.001),
        ({"Request-Timeout": "60"}, 10.0),  # never longer than the setting
        ({"Request-Timeout": "0"}, 10.0),
        ({"Request-Timeout": "-1"}, 10.0),
        ({"Request-Timeout": "soon"}, 10.0),
        ({"Request-Timeout": "1e9"}, 10.0),
    ],
)
def test_a_client_may_shorten_the_deadline_but_never_lengthen_it(headers: dict[str, str], expected: float) -> None:
    assert requested_deadline(Headers(headers=headers), 10.0) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["abcdefgh", "0f3c9a1e-7b6d-4a6e-9a43-6e0c1f1b9d2a", "req.2026:01_x-y", "a" * 128])
def test_well_formed_request_ids_are_kept(value: str) -> None:
    assert accepted_request_id(value) == value


@pytest.mark.parametrize("value", [None, "", "short", "a" * 129, "has space x", "new\nline-123", "<script>alert"])
def test_malformed_request_ids_are_refused(value: str | None) -> None:
    assert accepted_request_id(value) is None


# --- request ids, headers, errors -----------------------------------------------------------------------------------


async def test_the_request_id_is_kept_when_well_formed_and_made_otherwise() -> None:
    app, _ = _small_app()
    async with _client(app) as client:
        kept = await client.get("/slow/x", headers={"X-Request-ID": "client-id-0001"})  # 422: n is not an int
        replaced = await client.get("/slow/x", headers={"X-Request-ID": "bad id"})
        made = await client.get("/slow/x")
    assert kept.headers["x-request-id"] == "client-id-0001"
    assert replaced.headers["x-request-id"] != "bad id" and accepted_request_id(replaced.headers["x-request-id"])
    assert accepted_request_id(made.headers["x-request-id"])
    assert made.headers["x-request-id"] != replaced.headers["x-request-id"]


async def test_every_response_carries_the_security_headers() -> None:
    app, _ = _small_app()
    async with _client(app) as client:
        responses = [await client.get("/slow/x"), await client.get("/nowhere"), await client.get("/cached")]
    for response in responses:
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["strict-transport-security"].startswith("max-age=")
    assert responses[0].headers["cache-control"] == "no-store"
    assert responses[2].headers["cache-control"] == "public, max-age=60"  # a route's own caching is kept


async def test_an_unhandled_error_is_a_500_problem_without_internals(caplog: pytest.LogCaptureFixture) -> None:
    app, _ = _small_app()
    with caplog.at_level(logging.ERROR, logger="strata.serve_apps.gateway._hygiene"):
        async with _client(app) as client:
            response = await client.get("/boom", headers={"X-Request-ID": "boom-request-1"})
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body == {
        "type": "https://strata.dev/problems/internal",
        "title": "Internal Server Error",
        "status": 500,
        "instance": "urn:strata:request:boom-request-1",
        "request_id": "boom-request-1",
    }
    assert "secret internals" in caplog.text  # the log has what the body must not


async def test_a_deadline_overrun_cancels_the_work_and_answers_504() -> None:
    app, seen = _small_app(EdgePolicy(deadline_s=5))
    async with _client(app) as client:
        response = await client.get("/slow/1", headers={"Request-Timeout": "20ms", "X-Request-ID": "slow-request-1"})
    assert response.status_code == 504
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["request_id"] == "slow-request-1"
    assert response.json()["type"].endswith("/deadline-exceeded")
    assert seen["cancelled"] is True


async def test_a_declared_oversized_body_is_refused_before_it_is_read() -> None:
    app, seen = _small_app(EdgePolicy(max_body_bytes=1024))
    async with _client(app) as client:
        response = await client.post("/echo", content=b"x" * 1025)
        fits = await client.post("/echo", content=b"x" * 1024)
    assert response.status_code == 413 and response.headers["content-type"] == PROBLEM
    assert response.json()["request_id"] == response.headers["x-request-id"]
    assert fits.status_code == 200 and fits.json() == {"size": 1024}
    assert seen["bodies"] == 1


async def test_a_streamed_oversized_body_is_cut_off_with_413(edge_policy: None) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b"{" + b" " * 511

    async with _client(api) as client:
        response = await client.post(
            "/v1/auth/register", content=chunks(), headers={"Content-Type": "application/json"}
        )
    assert "content-length" not in response.request.headers  # sent chunked
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"].endswith("/payload-too-large")


async def test_unknown_routes_and_wrong_methods_are_problems() -> None:
    async with _client(api) as client:
        missing = await client.get("/v1/nothing-here", headers={"X-Request-ID": "missing-route-1"})
        wrong = await client.delete("/healthz")
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
    assert missing.json()["request_id"] == "missing-route-1"
    assert wrong.status_code == 405 and wrong.headers["content-type"] == PROBLEM
    assert wrong.headers["allow"] == "GET"
    assert wrong.json()["request_id"] == wrong.headers["x-request-id"]


async def test_cors_answers_allowed_origins_only(edge_policy: None) -> None:
    preflight = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
    async with _client(api) as client:
        allowed = await client.options("/v1/users/me", headers={"Origin": "https://app.test", **preflight})
        other = await client.options("/v1/users/me", headers={"Origin": "https://evil.test", **preflight})
        simple = await client.get("/nowhere", headers={"Origin": "https://app.test"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.test"
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert allowed.headers["x-request-id"]
    assert "access-control-allow-origin" not in other.headers
    assert other.status_code == 405 and other.headers["content-type"] == PROBLEM
    assert simple.headers["access-control-allow-origin"] == "https://app.test"
    assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()


async def test_no_cors_headers_without_an_allow_list() -> None:
    async with _client(api) as client:
        response = await client.options(
            "/v1/users/me", headers={"Origin": "https://app.test", "Access-Control-Request-Method": "GET"}
        )
    assert not any(name.startswith("access-control-") for name in response.headers)


# --- inside a Serve replica -----------------------------------------------------------------------------------------


class FakeReplicaResult:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


@pytest.fixture
def serve_request() -> Iterator[Any]:
    """Serve's request context as a replica sets it for an ingress request (id ``serve-made-id-1``)."""
    token = serve_context._serve_request_context.set(
        serve_context._RequestContext(
            request_id="serve-made-id-1", _internal_request_id="internal-1", cancel_on_parent_request_cancel=True
        )
    )
    yield
    serve_context._serve_request_context.reset(token)


async def test_the_request_id_becomes_serves_request_id_for_the_request(serve_request: None) -> None:
    app, _ = _small_app()
    async with _client(app) as client:
        own = await client.get("/context", headers={"X-Request-ID": "client-chosen-1"})
        serves = await client.get("/context")
    assert own.json() == {"serve_request_id": "client-chosen-1"}  # logs and handle calls carry the client's id
    assert own.headers["x-request-id"] == "client-chosen-1"
    assert serves.json() == {"serve_request_id": "serve-made-id-1"}
    assert "x-request-id" not in serves.headers  # Serve's proxy echoes its own id: no second header
    assert serve_context._serve_request_context.get().request_id == "serve-made-id-1"  # restored


async def test_a_deadline_cancels_the_handle_calls_in_flight(serve_request: None) -> None:
    downstream = FakeReplicaResult()
    serve_context._add_in_flight_request("internal-1", "response-1", downstream)
    app, seen = _small_app()
    try:
        async with _client(app) as client:
            response = await client.get("/slow/1", headers={"Request-Timeout": "10ms"})
    finally:
        serve_context._remove_in_flight_request("internal-1", "response-1")
    assert response.status_code == 504 and response.json()["request_id"] == "serve-made-id-1"
    assert seen["cancelled"] and downstream.cancelled


# --- log line and metrics -------------------------------------------------------------------------------------------


async def test_each_request_is_one_log_line_and_one_metric_by_route_template(caplog: pytest.LogCaptureFixture) -> None:
    app, _ = _small_app()
    with caplog.at_level(logging.INFO, logger="strata.access"):
        async with _client(app) as client:
            await client.get("/slow/x", headers={"X-Request-ID": "logged-request-1"})
            await client.get("/no/such/route")
    records = [r for r in caplog.records if r.name == "strata.access"]
    assert len(records) == 2
    first = records[0].__dict__
    assert (first["request_id"], first["http_method"], first["http_route"], first["http_status"]) == (
        "logged-request-1",
        "GET",
        "/slow/{n}",
        422,
    )
    assert first["duration_ms"] >= 0
    assert records[1].__dict__["http_route"] == "unmatched"
    recorded = app.state.request_recorder.records
    assert [(route, method, status) for route, method, status, _ in recorded] == [
        ("/slow/{n}", "GET", 422),
        ("unmatched", "GET", 404),
    ]


# --- OpenAPI --------------------------------------------------------------------------------------------------------


def _api_routes() -> set[tuple[str, str]]:
    def flatten(routes: list[Any]) -> list[Any]:
        flat = []
        for route in routes:
            inner = getattr(route, "original_router", None)
            flat += flatten(inner.routes) if inner is not None else [route]
        return flat

    return {
        (method, route.path)
        for route in flatten(list(api.routes))
        if isinstance(route, APIRoute) and route.include_in_schema
        for method in route.methods
    }


def test_the_document_covers_every_route_with_security_exactly_where_a_token_is_needed() -> None:
    api.openapi_schema = None
    document = build_openapi(api)
    operations = {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    assert set(operations) == _api_routes()
    assert document["components"]["securitySchemes"][BEARER] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": document["components"]["securitySchemes"][BEARER]["description"],
    }
    table = {(route.method, route.path): route.permission for route in ROUTES}
    for key, operation in operations.items():
        needs_token = table[key] != PUBLIC
        assert (operation.get("security") == [{BEARER: []}]) is needs_token, key
        responses = operation["responses"]
        if needs_token:
            assert "401" in responses, key
        if table[key] not in (PUBLIC, AUTHENTICATED):
            assert "403" in responses and operation["x-strata-permission"] == table[key], key
        assert "504" in responses, key
        for status, response in responses.items():
            if int(status) >= 400:
                assert response["content"] == {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        if "requestBody" in operation:
            assert {"413", "422"} <= set(responses), key
        success = next(r for s, r in responses.items() if s.startswith("2"))
        if key[1].startswith("/v1/") and "content" in success:
            schema = success["content"]["application/json"]["schema"]
            assert "$ref" in schema, f"{key} has no response model"
    assert "HTTPValidationError" not in document["components"]["schemas"]


async def test_openapi_and_docs_are_served() -> None:
    async with _client(api) as client:
        document = await client.get("/openapi.json")
        docs = await client.get("/docs")
    assert document.status_code == 200 and document.json()["openapi"].startswith("3.")
    assert docs.status_code == 200 and "swagger-ui" in docs.text and "/openapi.json" in docs.text
