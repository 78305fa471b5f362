"""Health checks take a failing replica out of rotation within 15 s; a flood past capacity is refused fast.

Faults come from fault injection (on in the test session): ``inject_fault(fail_health=True)`` makes one replica's
``check_health()`` raise; ``inject_fault(delay_s=...)`` on both users replicas makes their capacity
(``max_ongoing_requests`` per replica, then ``max_queued_requests`` per gateway replica) fill up.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import System
from tests.integration.faults import clear_faults, deployment_handle, on_replica, replica_states

pytestmark = pytest.mark.integration

HEALTH_PERIOD_S = 5.0
OUT_WITHIN_S = 15.0
"""The bound: three failed checks 5 s apart, counted from the first failed one."""
SERVE_PERIOD_JITTER = 1.1
"""Serve starts each health check after ``period * uniform(0.9, 1.1)``."""


def _replica_actor_alive(app: str, deployment: str, replica: str) -> bool:
    import ray

    try:
        ray.get_actor(f"SERVE_REPLICA::{app}#{deployment}#{replica}", namespace="serve")
    except ValueError:
        return False
    return True


def _wait_healthy(app: str, deployment: str, replicas: int, timeout: float = 120.0) -> None:
    """Until ``deployment`` is HEALTHY with ``replicas`` running replicas (the replaced one came back)."""
    from ray import serve

    deadline = time.monotonic() + timeout
    status: Any = None
    while time.monotonic() < deadline:
        status = serve.status().applications[app].deployments[deployment]
        running = status.replica_states.get("RUNNING", 0)
        if str(getattr(status.status, "value", status.status)) == "HEALTHY" and running >= replicas:
            return
        time.sleep(1.0)
    raise AssertionError(f"{app}/{deployment} not healthy with {replicas} replicas after {timeout:.0f}s: {status}")


@pytest.fixture
def users_healthy_afterwards(ray_driver: None) -> Iterator[None]:
    yield
    _wait_healthy("users", "UsersService", 2)
    clear_faults("users", 2)


def test_a_replica_failing_its_health_check_gets_no_new_requests_within_15s(
    system: System, users_healthy_afterwards: None, record_property: Any
) -> None:
    handle = deployment_handle("users")
    target = sorted(replica_states("users", 2))[0]
    assert _replica_actor_alive("users", "UsersService", target)
    on_replica("users", "inject_fault", target, fail_health=True)
    fault_at = time.time()

    # A steady stream of handle calls (least-connection router) until Serve has stopped the target replica.
    last_served_at = fault_at
    failing_since: float | None = None
    answers: Counter[str] = Counter()
    removed_at: float | None = None
    deadline = fault_at + 45
    while time.time() < deadline:
        state = handle.fault_state.remote().result(timeout_s=15)
        now = time.time()
        answers[state["replica"]] += 1
        if state["replica"] == target:
            last_served_at = now
            failing_since = state["health_failing_since"] or failing_since
        elif (
            removed_at is None
            and answers.total() % 20 == 0
            and not _replica_actor_alive("users", "UsersService", target)
        ):
            removed_at = now
        if removed_at is not None and now - removed_at > 3:
            break
        time.sleep(0.02)

    assert removed_at is not None, f"replica {target} still running {deadline - fault_at:.0f}s after its fault"
    assert failing_since is not None, "the target never reported a failed health check while still serving"
    after_first_failure = last_served_at - failing_since
    after_fault = last_served_at - fault_at
    removal_after_fault = removed_at - fault_at
    record_property("last_request_after_first_failed_check_s", round(after_first_failure, 2))
    record_property("last_request_after_fault_s", round(after_fault, 2))
    record_property("replica_stopped_after_fault_s", round(removal_after_fault, 2))
    record_property("first_failed_check_after_fault_s", round(failing_since - fault_at, 2))
    print(
        f"\nfirst failed check {failing_since - fault_at:.2f}s after the fault; last request served "
        f"{after_first_failure:.2f}s after the first failed check ({after_fault:.2f}s after the fault); "
        f"replica seen stopped {removal_after_fault:.2f}s after the fault; answers {dict(answers)}"
    )
    assert answers[target] >= 1
    assert len(answers) >= 2, "the other replicas kept answering"
    # A documented promise, kept as a bound (DESIGN.md, docs/operations.md): health checks every 5 s, and a replica
    # failing them is out of rotation within 15 s of its first failed check. Serve's own schedule takes about 10 s of
    # it (three failed checks 5 s apart); what the machine adds is the last check's call and the routers' update,
    # which the recorded figures show (first_failed_check_after_fault_s, last_request_after_first_failed_check_s).
    assert after_first_failure <= OUT_WITHIN_S
    # From the fault itself, Serve's own schedule bounds it: up to one (jittered) period until the first check.
    assert after_fault <= OUT_WITHIN_S + HEALTH_PERIOD_S * SERVE_PERIOD_JITTER


def _actors_in_readyz(system: System) -> dict[str, dict[str, Any]]:
    import asyncio

    from tests.integration.operators import operator_headers

    headers = asyncio.run(operator_headers(system))
    with system.client() as client:
        body = client.get("/readyz", headers=headers).json()
    return dict(body["components"]["actors"])


def test_a_killed_relay_actor_is_restarted_by_ray_and_readyz_shows_its_health(
    system: System, ray_driver: None, record_property: Any
) -> None:
    import ray
    from ray.util.state import list_actors

    actors = _actors_in_readyz(system)
    relays = sorted(name for name in actors if name.startswith("strata-relay-"))
    assert relays, actors
    assert all(actors[name]["status"] == "up" for name in relays), actors
    name = relays[0]

    def restarts() -> int:
        (state,) = list_actors(
            address=system.runtime.ray_address, filters=[("name", "=", name), ("state", "!=", "DEAD")], detail=True
        )
        return int(state.num_restarts)

    before = restarts()
    actor = ray.get_actor(name, namespace="strata")
    killed_at = time.monotonic()
    ray.kill(actor, no_restart=False)  # as if its process died: Ray restarts it (max_restarts=-1)
    deadline = killed_at + 60
    while True:
        try:
            ray.get(actor.stats.remote(), timeout=5)
            break
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            assert time.monotonic() < deadline, f"{name} did not come back within 60 s"
            time.sleep(0.2)
    back_in = time.monotonic() - killed_at
    record_property("relay_restarted_in_s", round(back_in, 2))
    print(f"\n{name} killed, answering again after {back_in:.2f}s (restarts {before} -> {restarts()})")
    assert restarts() == before + 1
    assert _actors_in_readyz(system)[name] == {"status": "up"}


@dataclass
class _Outcome:
    status: int | None
    seconds: float
    retry_after: str | None = None
    content_type: str = ""
    slug: str = ""
    error: str = ""


FLOOD = 200
"""Concurrent requests: above users' capacity (2 replicas x 32 ongoing + 2 gateway replicas x 32 queued = 128)."""
FLOOD_DELAY_S = 2.5
CLIENT_TIMEOUT_S = 15.0
"""The timeout of `system.async_client()`."""


async def _flood(system: System, token: str) -> list[_Outcome]:
    async with contextlib.AsyncExitStack() as stack:
        # One client per request, each with one connection: httpx's pool scans all of its connections for every
        # request it places, so a single client of 200 connections spent about 9 s of this process's CPU on one
        # flood (measured with py-spy) and sent the flood over seconds: it measured the client, not strata.
        clients = [
            await stack.enter_async_context(system.async_client(limits=httpx.Limits(max_connections=1)))
            for _ in range(FLOOD)
        ]  # their timeout: CLIENT_TIMEOUT_S
        # Open the connections first (TLS handshakes), so the flood measures the requests, not the handshakes.
        warm = await asyncio.gather(*(client.get("/healthz") for client in clients))
        assert all(r.status_code == 200 for r in warm)

        async def one(client: httpx.AsyncClient) -> _Outcome:
            started = time.monotonic()
            try:
                response = await client.get("/v1/users/me", headers={"Authorization": f"Bearer {token}"})
            except httpx.HTTPError as exc:
                return _Outcome(None, time.monotonic() - started, error=type(exc).__name__)
            slug = ""
            if response.headers.get("content-type", "").startswith("application/problem+json"):
                slug = str(response.json().get("type", "")).rsplit("/", 1)[-1]
            return _Outcome(
                response.status_code,
                time.monotonic() - started,
                response.headers.get("retry-after"),
                response.headers.get("content-type", ""),
                slug,
            )

        return list(await asyncio.gather(*(one(client) for client in clients)))


def _access_token(system: System) -> str:
    email = f"flood-{uuid.uuid4().hex[:10]}@example.com"
    password = system.remember_secret(f"Correct-Horse-{uuid.uuid4().hex[:12]}")
    with system.client() as client:
        for path in ("/v1/auth/register", "/v1/auth/login"):
            deadline = time.monotonic() + 90
            response = client.post(path, json={"email": email, "password": password})
            while response.status_code == 429 and time.monotonic() < deadline:  # other tests used the auth limit
                time.sleep(min(float(response.headers.get("retry-after", "1")), 10.0))
                response = client.post(path, json={"email": email, "password": password})
            assert response.status_code in (200, 201), response.text
    tokens = response.json()
    system.remember_secret(tokens["refresh_token"])
    return system.remember_secret(str(tokens["access_token"]))


def test_a_flood_past_capacity_is_refused_fast_with_retry_after_and_service_resumes(
    system: System, users_healthy_afterwards: None, record_property: Any
) -> None:
    token = _access_token(system)
    # Both gateway replicas fetch the role -> permissions map now (cached 30 s), not during the flood through the
    # slowed users service: the flood then measures the users queue alone.
    with system.client(limits=httpx.Limits(max_connections=16)) as client:
        headers = {"Authorization": f"Bearer {token}"}
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            warm = list(pool.map(lambda _: client.get("/v1/users/me", headers=headers).status_code, range(32)))
        assert warm == [200] * 32
    replicas = sorted(replica_states("users", 2))
    try:
        for replica in replicas:
            on_replica("users", "inject_fault", replica, delay_s=FLOOD_DELAY_S)
        counted = replica_states("users", 2)
        outcomes = asyncio.run(_flood(system, token))
        recounted = replica_states("users", 2)
    finally:
        clear_faults("users", 2)
    # Requests that passed a users replica's fault point (its database): each served one passes it once.
    worked = sum(recounted[replica]["served"] - counted[replica]["served"] for replica in replicas)

    refused = [o for o in outcomes if o.status in (429, 503)]
    served = [o for o in outcomes if o.status == 200]
    failed = [o for o in outcomes if o.status is None]
    other = Counter(o.status for o in outcomes if o not in refused and o not in served and o not in failed)
    refusal_seconds = sorted(o.seconds for o in refused)
    served_seconds = sorted(o.seconds for o in served)

    started = time.monotonic()
    with system.client() as client:
        after = client.get("/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    resumed_in = time.monotonic() - started

    record_property("flood_requests", FLOOD)
    record_property("served", len(served))
    record_property("refused", len(refused))
    record_property("failed_or_timed_out", len(failed))
    if refusal_seconds:
        record_property("refusal_p50_s", round(statistics.median(refusal_seconds), 3))
        record_property("refusal_max_s", round(refusal_seconds[-1], 3))
    if served_seconds:
        record_property("served_p50_s", round(statistics.median(served_seconds), 3))
        record_property("served_max_s", round(served_seconds[-1], 3))
    record_property("next_request_after_flood_s", round(resumed_in, 3))
    record_property("users_units_of_work", worked)
    print(
        f"\nflood of {FLOOD} with users slowed by {FLOOD_DELAY_S}s: {len(served)} served, {len(refused)} refused "
        f"({Counter(o.status for o in refused)}), {len(failed)} failed, other {dict(other)}; refusals p50 "
        f"{statistics.median(refusal_seconds) if refusal_seconds else float('nan'):.3f}s max "
        f"{refusal_seconds[-1] if refusal_seconds else float('nan'):.3f}s; served p50 "
        f"{statistics.median(served_seconds) if served_seconds else float('nan'):.3f}s; "
        f"next request {after.status_code} in {resumed_in:.3f}s; units of work on users {worked}"
    )

    assert not failed, f"requests failed or timed out instead of being refused: {failed[:3]}"
    assert not other, other
    assert refused, "nothing was refused: the flood never went past capacity"
    assert served, "nothing was served during the flood"
    for outcome in refused:
        assert outcome.retry_after is not None and int(outcome.retry_after) >= 1, outcome
        assert outcome.content_type.startswith("application/problem+json"), outcome
        assert outcome.slug in ("service-unavailable", "too-many-requests"), outcome
    # The point: a refusal comes at once, not after waiting for the work it could not get or for a timeout. Asserted
    # by what happened, not by how long it took (that depends on the machine: the figures above are recorded). A 503
    # with Retry-After is Serve's refusal when a request arrives at a full queue (BackPressureError), never given to
    # a request that waited; none timed out (no failed request above); and no refused request did any work: the
    # users replicas' database saw the served requests and nothing more (the gateways' permission cache, warmed
    # above, may refresh once per gateway replica).
    assert len(served) <= worked <= len(served) + 2, (worked, len(served), len(refused))
    # Normal service resumes right after.
    assert after.status_code == 200, after.text
