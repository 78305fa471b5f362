"""The walking skeleton: /healthz, /readyz, and readiness following PostgreSQL down and up again.

/readyz's details go to operators (``ops:read``); anonymous callers get the status alone, and however many call, a
gateway replica checks at most once a second.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import defaultdict

import httpx
import pytest

from strata.cluster import start_component, stop_component
from strata.schemas import app_names
from tests.conftest import System
from tests.integration.operators import operator_headers
from tests.integration.standbys import standby_name

pytestmark = pytest.mark.integration


def _readyz(system: System, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(system.runtime.gateway_url + "/readyz", timeout=15, verify=system.verify, headers=headers)


def _wait_for(
    system: System, status: int, timeout: float = 60.0, headers: dict[str, str] | None = None
) -> httpx.Response:
    deadline = time.monotonic() + timeout
    response = _readyz(system, headers)
    while response.status_code != status and time.monotonic() < deadline:
        time.sleep(0.5)
        response = _readyz(system, headers)
    return response


def test_healthz_answers(system: System) -> None:
    response = httpx.get(system.runtime.gateway_url + "/healthz", timeout=10, verify=system.verify)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["x-request-id"]


async def test_readyz_names_postgres_kafka_and_every_app_to_an_operator(system: System, ray_driver: None) -> None:
    response = _wait_for(system, 200, headers=await operator_headers(system))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["components"]["postgres"]["status"] == "up"
    assert body["components"]["kafka"]["status"] == "up"
    assert body["components"]["revocation_feed"]["status"] == "current"  # the answering replica's
    assert set(body["components"]["apps"]) == {"gateway", "auth", "users", "data", "audit"}
    assert all(app["status"] == "RUNNING" for app in body["components"]["apps"].values())
    outbox = body["components"]["outbox"]
    assert set(outbox) == {"auth", "users", "data"}
    assert all(isinstance(backlog["rows"], int) and backlog["oldest_age_s"] >= 0 for backlog in outbox.values())
    assert body["check"]["runs"] >= 1 and body["check"]["replica"]


def test_anonymous_readyz_names_no_component_address_or_error(system: System) -> None:
    response = _wait_for(system, 200)

    assert response.status_code == 200 and response.json() == {"status": "ready"}
    assert response.headers["cache-control"] == "no-store"
    text = response.text
    names = ["postgres", "kafka", "outbox", "actors", "strata-", "error", *app_names()]
    assert [name for name in names if name in text] == []
    assert not re.search(r"\d+\.\d+\.\d+\.\d+|:\d{2,5}", text)  # no address or port


async def test_a_refused_token_at_readyz_is_401_problem_json(system: System) -> None:
    response = _readyz(system, {"Authorization": "Bearer not-a-token"})

    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_a_token_without_ops_read_gets_the_status_alone(system: System) -> None:
    from tests.integration.test_authorization import _login, _register

    _, email, password = await asyncio.to_thread(_register, system)
    member = {"Authorization": f"Bearer {(await asyncio.to_thread(_login, system, email, password))['access_token']}"}

    assert _readyz(system, member).json() == {"status": "ready"}


async def test_a_thousand_calls_cost_at_most_one_check_per_second_per_replica(system: System, ray_driver: None) -> None:
    operator = await operator_headers(system)
    assert _wait_for(system, 200).status_code == 200
    # Each replica's check counter as an operator's calls see it, with when (this process's clock) it was seen.
    seen: dict[str, list[tuple[float, int]]] = defaultdict(list)
    anonymous: list[httpx.Response] = []

    async with system.async_client(limits=httpx.Limits(max_connections=32)) as client:

        async def call(i: int) -> None:
            if i % 25 == 0:
                response = await client.get("/readyz", headers=operator)
                check = response.json()["check"]
                seen[check["replica"]].append((time.monotonic(), check["runs"]))
            else:
                anonymous.append(await client.get("/readyz"))

        for start in range(0, 1000, 100):  # 1,000 calls, up to 100 at once (the replicas' queues stay short)
            await asyncio.gather(*(call(i) for i in range(start, start + 100)))

    assert len(anonymous) == 960 and {r.status_code for r in anonymous} == {200}
    assert {r.text for r in anonymous} == {'{"status":"ready"}'}
    assert sum(len(samples) for samples in seen.values()) == 40
    for replica, samples in seen.items():
        (first_at, first_runs), (last_at, last_runs) = min(samples), max(samples)
        # Between two of its answers a replica starts at most one check per second (readyz_cache_s), plus the
        # one a stale answer started at the beginning: counted, not timed.
        assert last_runs - first_runs <= (last_at - first_at) / 1.0 + 1, (replica, samples)


def test_unknown_route_is_problem_json(system: System) -> None:
    response = httpx.get(system.runtime.gateway_url + "/no/such/route", timeout=10, verify=system.verify)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 404 and body["type"].endswith("/not-found")
    assert "Traceback" not in response.text


async def test_readyz_follows_postgres_down_and_back_without_restarting_strata(
    system: System, ray_driver: None
) -> None:
    assert _wait_for(system, 200).status_code == 200
    stop_component(system.settings, "postgres")
    try:
        down = _wait_for(system, 503)
        assert down.status_code == 503, down.text
        # Anonymous: the status alone. (An operator's details need the role -> permission map, which the users
        # service reads from PostgreSQL: with it down they show once the gateway keeps serving its last map.)
        assert down.json() == {"status": "unready"}
    finally:
        start_component(system.settings, "postgres")
    back = _wait_for(system, 200, headers=await operator_headers(system))
    assert back.status_code == 200, back.text
    # The data replica's pool serves queries again: readiness goes gateway -> data -> PostgreSQL.
    postgres = back.json()["components"]["postgres"]
    assert postgres["status"] == "up", postgres
    # Its standby stopped with it and started again with it.
    assert [standby["name"] for standby in postgres["standbys"]] == [standby_name(system)], postgres
