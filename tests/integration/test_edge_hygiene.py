"""Request hygiene at the public endpoint (TLS front -> Serve -> gateway), against the running system.

Must show 6: an oversized body, an unknown route, a wrong method and a deadline
overrun each answer their status as problem+json carrying the request id (the
client's when well-formed, a generated one otherwise). Also: no error body
holds a traceback or an internal name; security headers; CORS only for allowed
origins; the request id reaches the services' events and the JSON log line;
the request metrics reach Prometheus.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from strata.cluster._ray import temp_dir_for
from strata.schemas.events import decode
from strata.serve_apps.gateway._hygiene import accepted_request_id
from tests.conftest import System
from tests.integration.eventing import admin_fetch, eventually

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"
FLUSH_REQUESTS = 3000
# What must never reach a client: tracebacks, exception texts, module, class, deployment and actor names.
INTERNALS = re.compile(
    r"Traceback|File \"|Error\(|Exception|ray\.|strata\.(?!dev/problems)|serve_apps|_deployment|Gateway|UsersService|"
    r"AuthService|Replica|actor|asyncpg|pydantic|starlette|fastapi",
)


def _rid() -> str:
    return f"hyg-{uuid.uuid4().hex[:16]}"


def _problem(response: httpx.Response, status: int, request_id: str | None = None) -> dict[str, Any]:
    """The response's problem body, checked: status, media type, request id in body and header, no internals."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["type"].startswith("https://strata.dev/problems/")
    if request_id is not None:
        assert body["request_id"] == request_id
    assert accepted_request_id(body["request_id"])
    assert body["instance"] == f"urn:strata:request:{body['request_id']}"
    assert body["request_id"] in response.headers.get_list("x-request-id")
    assert INTERNALS.search(response.text) is None, response.text
    return body


@pytest.fixture(scope="module")
def client(system: System) -> Iterator[httpx.Client]:
    with system.client() as client:
        yield client


@pytest.fixture(scope="module")
def member(system: System, client: httpx.Client) -> dict[str, Any]:
    """A registered, logged-in member: ``user_id``, ``email``, ``headers`` (bearer), ``register_request_id``."""
    email = f"hygiene-{uuid.uuid4().hex[:10]}@example.com"
    password = system.remember_secret(f"Hygiene-Pass-{uuid.uuid4().hex[:12]}")
    register_rid = _rid()
    registered = client.post(
        "/v1/auth/register", json={"email": email, "password": password}, headers={"X-Request-ID": register_rid}
    )
    assert registered.status_code == 201, registered.text
    login = client.post("/v1/auth/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    token = system.remember_secret(login.json()["access_token"])
    system.remember_secret(login.json()["refresh_token"])
    return {
        "user_id": registered.json()["user_id"],
        "headers": {"Authorization": f"Bearer {token}"},
        "register_request_id": register_rid,
    }


# --- Must show 6 ----------------------------------------------------------------------------------------------------


def test_an_oversized_body_is_413_with_the_clients_request_id(client: httpx.Client) -> None:
    rid = _rid()
    big = {"email": "big@example.com", "password": "x" * (100 * 1024)}
    response = client.post("/v1/auth/register", json=big, headers={"X-Request-ID": rid})
    body = _problem(response, 413, rid)
    assert body["type"].endswith("/payload-too-large")
    assert response.headers.get_list("x-request-id") == [rid]


def test_an_oversized_body_streamed_without_a_length_is_413(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"email": "big@example.com", "password": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    rid = _rid()
    response = client.post(
        "/v1/auth/register",
        content=chunks(),
        headers={"X-Request-ID": rid, "Content-Type": "application/json"},
    )
    assert "content-length" not in response.request.headers
    _problem(response, 413, rid)


def test_an_unknown_route_is_404_with_a_generated_request_id(client: httpx.Client) -> None:
    response = client.get("/v1/no-such-thing")
    body = _problem(response, 404)
    assert body["type"].endswith("/not-found")
    assert response.headers.get_list("x-request-id") == [body["request_id"]]


def test_a_wrong_method_is_405_with_allow_and_a_fresh_id_for_a_malformed_one(client: httpx.Client) -> None:
    response = client.delete("/v1/users/me/permissions", headers={"X-Request-ID": "bad id!"})
    body = _problem(response, 405)
    assert body["request_id"] != "bad id!"
    assert response.headers["allow"] == "GET"
    assert body["type"].endswith("/method-not-allowed")


def test_a_deadline_overrun_is_504_with_the_request_id(client: httpx.Client, member: dict[str, Any]) -> None:
    assert client.get("/v1/users/me", headers=member["headers"]).status_code == 200  # the route works in time
    rid = _rid()
    response = client.get("/v1/users/me", headers={**member["headers"], "Request-Timeout": "1ms", "X-Request-ID": rid})
    body = _problem(response, 504, rid)
    assert body["type"].endswith("/deadline-exceeded")
    assert response.headers.get_list("x-request-id") == [rid]


# --- headers and CORS -----------------------------------------------------------------------------------------------


def test_security_headers_are_on_every_response(client: httpx.Client, member: dict[str, Any]) -> None:
    responses = {
        "ok": client.get("/v1/users/me", headers=member["headers"]),
        "unauthorized": client.get("/v1/users/me"),
        "not found": client.get("/nowhere"),
        "docs": client.get("/docs"),
        "openapi": client.get("/openapi.json"),
    }
    for name, response in responses.items():
        assert response.headers["x-content-type-options"] == "nosniff", name
        assert response.headers["referrer-policy"] == "no-referrer", name
        assert response.headers["x-frame-options"] == "DENY", name
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"], name
        assert "max-age=" in response.headers["strict-transport-security"], name
    assert responses["ok"].headers["cache-control"] == "no-store"
    assert responses["docs"].status_code == 200 and "swagger-ui" in responses["docs"].text
    _problem(responses["unauthorized"], 401)


def test_cors_preflight_is_answered_for_allowed_origins_only(system: System, client: httpx.Client) -> None:
    preflight = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
    other = client.options("/v1/users/me", headers={"Origin": "https://not-allowed.example", **preflight})
    assert not any(name.startswith("access-control-allow") for name in other.headers)
    _problem(other, 405)
    allowed = system.settings.cors_allow_origins
    if not allowed:
        pytest.skip("the session's settings allow no origin (cors_allow_origins empty): only refusal is checked")
    answered = client.options("/v1/users/me", headers={"Origin": allowed[0], **preflight})
    assert answered.status_code == 200
    assert answered.headers["access-control-allow-origin"] == allowed[0]
    assert "authorization" in answered.headers["access-control-allow-headers"].lower()


# --- the request id end to end --------------------------------------------------------------------------------------


async def test_the_request_id_reaches_the_events_the_request_caused(
    system: System, client: httpx.Client, member: dict[str, Any]
) -> None:
    rid = _rid()
    patched = await asyncio.to_thread(
        client.patch,
        "/v1/users/me",
        json={"display_name": "Hygiene"},
        headers={**member["headers"], "X-Request-ID": rid},
    )
    assert patched.status_code == 200, patched.text
    generated = await asyncio.to_thread(
        client.patch, "/v1/users/me", json={"display_name": "Hygiene 2"}, headers=member["headers"]
    )
    assert generated.status_code == 200
    generated_rid = generated.headers["x-request-id"]

    async def users_requestids() -> list[str | None]:
        rows = await admin_fetch(
            system, "SELECT payload FROM users.outbox WHERE key = $1 ORDER BY seq", member["user_id"]
        )
        return [decode(bytes(row["payload"])).requestid for row in rows]

    requestids = await eventually(users_requestids, timeout=30, what="the profile events")
    assert rid in requestids and generated_rid in requestids
    rows = await admin_fetch(system, "SELECT payload FROM auth.outbox WHERE key = $1 ORDER BY seq", member["user_id"])
    registered = [decode(bytes(row["payload"])) for row in rows]
    assert registered[0].type == "strata.auth.account.registered.v1"
    assert registered[0].requestid == member["register_request_id"]


def _gateway_log_lines(system: System) -> Iterator[dict[str, Any]]:
    root = temp_dir_for(system.settings.data_dir)
    for path in {p.resolve() for p in root.glob("session_*/logs/serve/replica_gateway_*.log")}:  # once: not via _latest
        for line in path.read_bytes().splitlines():
            if line.startswith(b"{"):
                try:
                    yield orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue


async def test_each_request_writes_one_json_log_line(
    client: httpx.Client, member: dict[str, Any], system: System, record_property: Any
) -> None:
    rid = _rid()
    response = await asyncio.to_thread(client.get, "/v1/users/me", headers={**member["headers"], "X-Request-ID": rid})
    assert response.status_code == 200

    def access_lines() -> list[dict[str, Any]]:
        return [line for line in _gateway_log_lines(system) if line.get("request_id") == rid and "http_route" in line]

    # With RAY_SERVE_THROUGHPUT_OPTIMIZED, Serve buffers a replica's log records (1000 at a time) and writes them when
    # the buffer fills: cheap requests push the line out (bounded: at most FLUSH_REQUESTS of them).
    sent = 0
    lines = await asyncio.to_thread(access_lines)
    while not lines and sent < FLUSH_REQUESTS:
        for _ in range(250):
            assert (await asyncio.to_thread(client.get, "/healthz")).status_code == 200
        sent += 250
        lines = await asyncio.to_thread(access_lines)
    record_property("requests_until_the_log_buffer_was_written", sent)
    assert len(lines) == 1, f"{len(lines)} log lines after {sent} more requests"
    line = lines[0]
    assert (line["http_method"], line["http_route"], line["http_status"]) == ("GET", "/v1/users/me", 200)
    assert line["duration_ms"] > 0
    assert line["levelname"] == "INFO" and line["message"].startswith("GET /v1/users/me 200 ")


async def test_request_metrics_reach_prometheus(client: httpx.Client, system: System, ray_driver: None) -> None:
    import ray

    for _ in range(3):
        await asyncio.to_thread(client.get, "/healthz")
    endpoints = {(node["NodeManagerAddress"], node["MetricsExportPort"]) for node in ray.nodes() if node["Alive"]}

    async def scraped() -> str:
        async with httpx.AsyncClient(timeout=10) as http:
            texts = [(await http.get(f"http://{host}:{port}/metrics")).text for host, port in endpoints]
        text = "\n".join(texts)
        counted = re.search(r'ray_strata_http_requests_total\{[^}]*route="/healthz"[^}]*\} ([0-9.e+]+)', text)
        timed = "ray_strata_http_request_duration_seconds_bucket{" in text
        return text if counted and float(counted.group(1)) >= 3 and timed else ""

    text = await eventually(scraped, timeout=60, interval=2, what="the gateway's metrics on Ray's metrics export")
    sample = next(line for line in text.splitlines() if line.startswith("ray_strata_http_requests_total{"))
    assert 'method="' in sample and 'status="' in sample
