"""The walking skeleton: /healthz, /readyz, and readiness following PostgreSQL down and up again."""

from __future__ import annotations

import time

import httpx
import pytest

from strata.cluster import start_component, stop_component
from tests.conftest import System

pytestmark = pytest.mark.integration


def _readyz(system: System) -> httpx.Response:
    return httpx.get(system.runtime.gateway_url + "/readyz", timeout=15, verify=system.verify)


def _wait_for(system: System, status: int, timeout: float = 60.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    response = _readyz(system)
    while response.status_code != status and time.monotonic() < deadline:
        time.sleep(0.5)
        response = _readyz(system)
    return response


def test_healthz_answers(system: System) -> None:
    response = httpx.get(system.runtime.gateway_url + "/healthz", timeout=10, verify=system.verify)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["x-request-id"]


def test_readyz_names_postgres_kafka_and_every_app(system: System) -> None:
    response = _wait_for(system, 200)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["components"]["postgres"]["status"] == "up"
    assert body["components"]["kafka"]["status"] == "up"
    assert set(body["components"]["apps"]) == {"gateway", "auth", "users", "data", "audit"}
    assert all(app["status"] == "RUNNING" for app in body["components"]["apps"].values())
    outbox = body["components"]["outbox"]
    assert set(outbox) == {"auth", "users", "data"}
    assert all(isinstance(backlog["rows"], int) and backlog["oldest_age_s"] >= 0 for backlog in outbox.values())


def test_unknown_route_is_problem_json(system: System) -> None:
    response = httpx.get(system.runtime.gateway_url + "/no/such/route", timeout=10, verify=system.verify)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 404 and body["type"].endswith("/not-found")
    assert "Traceback" not in response.text


def test_readyz_follows_postgres_down_and_back_without_restarting_strata(system: System) -> None:
    assert _wait_for(system, 200).status_code == 200
    stop_component(system.settings, "postgres")
    try:
        down = _wait_for(system, 503)
        assert down.status_code == 503, down.text
        assert "postgres" in down.json()["down"]
        assert down.json()["components"]["postgres"]["status"] == "down"
    finally:
        start_component(system.settings, "postgres")
    back = _wait_for(system, 200)
    assert back.status_code == 200, back.text
    # The data replica's pool serves queries again: readiness goes gateway -> data -> PostgreSQL.
    assert back.json()["components"]["postgres"] == {"status": "up"}
