"""The least-connection choice, without Ray: fewest in flight wins, ties at random, unknown counts probed.

Also: the Serve config routes every handle-called deployment with it and bounds its queues, a refused handle call
becomes ``ServiceUnavailable``, and fault injection refuses when it is off.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import pytest
from ray.serve.exceptions import BackPressureError

from strata.cluster._serve import serve_config
from strata.contracts import DEFAULT_RETRY_AFTER_S, refused_as_unavailable
from strata.schemas import ServiceUnavailable, Settings
from strata.serve_apps._faults import FaultInjectionDisabled, ReplicaFaults
from strata.serve_apps._faulty_database import FaultyDatabase, with_fault_point
from strata.serve_apps._router import LeastConnectionRouter, ReplicaLoad, rank_least_connection


def _loads(**counts: int | None) -> list[ReplicaLoad[str]]:
    return [ReplicaLoad(name, count, capacity=10) for name, count in counts.items()]


def _first_choice(ranks: list[list[str]], counts: dict[str, int | None]) -> str:
    """What Serve does with the ranking: in the first rank, the least loaded known replica (else probes)."""
    known = [r for r in ranks[0] if counts[r] is not None]
    return min(known, key=lambda r: counts[r] or 0) if known else ranks[0][0]


def test_fewest_in_flight_wins() -> None:
    ranks = rank_least_connection(_loads(a=5, b=1, c=3), random.Random(1))
    assert ranks == [["b"], ["c"], ["a"]]


def test_an_idle_replica_wins_at_once() -> None:
    ranks = rank_least_connection(_loads(a=4, b=0), random.Random(1))
    assert ranks[0] == ["b"]


def test_ties_are_broken_at_random_and_never_favour_a_busier_replica() -> None:
    rng = random.Random(7)
    counts: dict[str, int | None] = {"a": 2, "b": 2, "c": 2, "busy": 3}
    picks = Counter(_first_choice(rank_least_connection(_loads(**counts), rng), counts) for _ in range(3000))
    assert picks["busy"] == 0
    assert set(picks) == {"a", "b", "c"}
    # Each of the three tied replicas gets about a third.
    assert all(800 < picks[r] < 1200 for r in "abc"), picks


def test_ties_at_zero_are_random_too() -> None:
    rng = random.Random(3)
    picks = Counter(rank_least_connection(_loads(a=0, b=0), rng)[0][0] for _ in range(2000))
    assert 850 < picks["a"] < 1150, picks


def test_no_replicas_gives_no_ranks() -> None:
    assert rank_least_connection([], random.Random(0)) == []


def test_unknown_counts_are_probed_first_not_taken_for_idle_or_busy() -> None:
    # "u" was never probed, or its cached count expired: the caller asks it before choosing a known busy one.
    ranks = rank_least_connection(_loads(a=3, u=None), random.Random(0))
    assert ranks == [["u"], ["a"]]


def test_with_an_idle_replica_the_unknown_ones_are_only_probed_alongside() -> None:
    # Rank 0 holds the idle replica (taken from the cache at once) and the unknown one (probed in the background).
    ranks = rank_least_connection(_loads(a=0, u=None, b=2), random.Random(0))
    assert ranks[0][0] == "a" and set(ranks[0]) == {"a", "u"}
    assert ranks[1:] == [["b"]]


def test_all_unknown_means_probe_them_all_in_random_order() -> None:
    rng = random.Random(5)
    firsts = Counter(rank_least_connection(_loads(a=None, b=None, c=None), rng)[0][0] for _ in range(300))
    ranks = rank_least_connection(_loads(a=None, b=None, c=None), rng)
    assert len(ranks) == 1 and sorted(ranks[0]) == ["a", "b", "c"]
    assert set(firsts) == {"a", "b", "c"}


def test_full_replicas_come_last_together() -> None:
    loads = [ReplicaLoad("full1", 10, 10), ReplicaLoad("ok", 9, 10), ReplicaLoad("full2", 12, 10)]
    ranks = rank_least_connection(loads, random.Random(0))
    assert ranks[0] == ["ok"]
    assert sorted(ranks[1]) == ["full1", "full2"] and len(ranks) == 2


ROUTER = "strata.serve_apps:LeastConnectionRouter"


@pytest.mark.parametrize("ingress", ["haproxy", "python"])
def test_every_deployment_has_bounded_queues_retry_after_and_5s_health_checks(ingress: str) -> None:
    config = serve_config(Settings(_env_file=None, ingress=ingress))
    for app in config["applications"]:
        for deployment in app["deployments"]:
            name = deployment["name"]
            assert deployment["max_ongoing_requests"] >= 1, name
            assert deployment["max_queued_requests"] >= 1, name
            assert deployment["backpressure_config"]["status_code"] in (429, 503), name
            assert deployment["backpressure_config"]["retry_after_s"] >= 1, name
            assert deployment["health_check_period_s"] == 5, name
            assert deployment["health_check_timeout_s"] == 5, name


@pytest.mark.parametrize("ingress", ["haproxy", "python"])
def test_handle_called_deployments_are_routed_by_least_connection(ingress: str) -> None:
    config = serve_config(Settings(_env_file=None, ingress=ingress))
    routers = {
        deployment["name"]: deployment.get("request_router_config", {}).get("request_router_class")
        for app in config["applications"]
        for deployment in app["deployments"]
    }
    for service in ("AuthService", "UsersService", "DataService", "AuditService"):
        assert routers[service] == ROUTER, service
    # Serve's Python proxy reaches the gateway by handle; in HAProxy mode HAProxy's leastconn does it instead.
    assert routers["Gateway"] == (ROUTER if ingress == "python" else None)


def test_the_router_class_in_the_config_imports_as_serve_loads_it() -> None:
    from ray.serve.config import RequestRouterConfig

    config = RequestRouterConfig(request_router_class=ROUTER)
    config._serialize_request_router_cls()
    router_class: Any = config.get_request_router_class()
    assert router_class is LeastConnectionRouter


def test_a_refused_handle_call_becomes_service_unavailable_with_retry_after() -> None:
    async def refused(retry_after_s: float | None) -> None:
        async with refused_as_unavailable("users"):
            raise BackPressureError(num_queued_requests=32, max_queued_requests=32, retry_after_s=retry_after_s)

    with pytest.raises(ServiceUnavailable) as caught:
        asyncio.run(refused(2.5))
    assert caught.value.status == 503 and caught.value.retry_after == 2.5
    with pytest.raises(ServiceUnavailable) as caught:
        asyncio.run(refused(None))
    assert caught.value.retry_after == DEFAULT_RETRY_AFTER_S


def test_fault_injection_refuses_when_off_and_wraps_nothing() -> None:
    faults = ReplicaFaults(enabled=False)
    with pytest.raises(FaultInjectionDisabled):
        faults.inject(1.0, fail_health=True)
    with pytest.raises(FaultInjectionDisabled):
        faults.state()
    faults.check_health()  # never fails when off
    sentinel: Any = object()
    assert with_fault_point(sentinel, faults) is sentinel


class _Db:
    async def run_in_transaction(self, fn: Any, *args: Any, isolation: str = "read_committed") -> Any:
        return await fn(None, *args)


def test_an_injected_delay_slows_each_unit_of_work_and_is_counted() -> None:
    faults = ReplicaFaults(enabled=True)
    faults.inject(0.05, fail_health=False)
    db: Any = with_fault_point(_Db(), faults)
    assert isinstance(db, FaultyDatabase)

    async def unit(_conn: Any, x: int) -> int:
        return x + 1

    async def twice() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await db.run_in_transaction(unit, 1) == 2
        assert await db.run_in_transaction(unit, 2) == 3
        return loop.time() - started

    assert asyncio.run(twice()) >= 0.1
    assert faults.state()["served"] == 2


def test_an_injected_health_failure_raises_and_keeps_its_first_time() -> None:
    faults = ReplicaFaults(enabled=True)
    faults.inject(0.0, fail_health=True)
    with pytest.raises(RuntimeError):
        faults.check_health()
    first = faults.state()["health_failing_since"]
    with pytest.raises(RuntimeError):
        faults.check_health()
    assert faults.state()["health_failing_since"] == first is not None
    faults.clear()
    faults.check_health()
