"""How /readyz asks the services: one client per service with an outbox, any failure on the path shown as down."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from strata.contracts import ServiceClient, UsersClient
from strata.schemas import DatabaseCheck, OutboxBacklog, ServiceReadiness, Settings, outbox_owners
from strata.serve_apps.gateway._readiness import ReadinessCache, check_service, in_networks, outbox_services


class Answers:
    """A fake handle whose ``readiness`` answers (or raises) ``answer``."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def __getattr__(self, method: str) -> Any:
        answer = self.answer

        class Method:
            @staticmethod
            async def remote() -> Any:
                if isinstance(answer, BaseException):
                    raise answer
                if answer == "hang":
                    await asyncio.sleep(3600)
                return answer

        return Method()


def _handle(answer: Any) -> Any:
    return Answers(answer)


def test_every_service_with_an_outbox_is_asked_reusing_the_replicas_own_clients() -> None:
    users = UsersClient(_handle(None))

    services = outbox_services([users])

    assert list(services) == [spec.name for spec in outbox_owners()]
    assert services["users"] is users
    assert all(type(client) is ServiceClient for app, client in services.items() if app != "users")
    assert {app: client.service for app, client in services.items()} == {app: app for app in services}


async def test_a_report_passes_through_and_a_failure_on_the_path_is_down_with_its_name(monkeypatch: Any) -> None:
    report = ServiceReadiness(database=DatabaseCheck(status="up"), outbox=OutboxBacklog(rows=3, oldest_age_s=0.5))
    monkeypatch.setattr("strata.serve_apps.gateway._readiness.CHECK_TIMEOUT_S", 0.05)

    assert await check_service(ServiceClient(_handle(report), app="data")) == report
    failed = await check_service(ServiceClient(_handle(ConnectionError("gone")), app="data"))
    hung = await check_service(ServiceClient(_handle("hang"), app="data"))

    assert failed.database.model_dump(exclude_none=True) == {"status": "down", "error": "ConnectionError"}
    assert failed.outbox is None
    assert hung.database.model_dump(exclude_none=True) == {"status": "down", "error": "timeout"}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class GatedCheck:
    """A readiness check that runs until released, counting its runs."""

    def __init__(self) -> None:
        self.runs = 0
        self.release = asyncio.Event()

    async def __call__(self) -> tuple[bool, dict[str, Any]]:
        self.runs += 1
        await self.release.wait()
        return True, {"status": "ready", "run": self.runs}


async def test_callers_during_a_check_share_it_and_later_ones_reuse_it_until_it_is_stale() -> None:
    check, clock = GatedCheck(), Clock()
    cache = ReadinessCache(check, ttl_s=1.0, clock=clock)

    waiting = [asyncio.ensure_future(cache.answer()) for _ in range(1000)]
    await asyncio.sleep(0)
    check.release.set()
    answers = await asyncio.gather(*waiting)

    assert check.runs == 1 and cache.runs == 1
    assert all(answer == (True, {"status": "ready", "run": 1}) for answer in answers)
    clock.now += 0.999
    assert (await cache.answer())[1]["run"] == 1 and check.runs == 1
    clock.now += 0.001
    assert (await cache.answer())[1]["run"] == 2 and cache.runs == 2


async def test_a_caller_that_goes_away_does_not_cancel_the_check_others_await() -> None:
    check = GatedCheck()
    cache = ReadinessCache(check, ttl_s=1.0, clock=Clock())
    impatient = asyncio.ensure_future(cache.answer())
    patient = asyncio.ensure_future(cache.answer())
    await asyncio.sleep(0)

    impatient.cancel()
    check.release.set()

    assert (await patient)[0] is True and check.runs == 1


async def test_a_failed_check_is_not_cached_and_the_next_caller_checks_again() -> None:
    runs = 0

    async def flaky() -> tuple[bool, dict[str, Any]]:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("boom")
        return False, {"status": "unready"}

    cache = ReadinessCache(flaky, ttl_s=1.0, clock=Clock())

    with pytest.raises(RuntimeError):
        await cache.answer()
    assert await cache.answer() == (False, {"status": "unready"})
    assert runs == 2


def test_trusted_networks_match_addresses_and_nothing_else() -> None:
    networks = Settings(_env_file=None, readyz_detail_networks="10.0.0.0/8, ::1").readyz_detail_network_list

    assert in_networks("10.2.3.4", networks) and in_networks("::1", networks)
    assert not in_networks("192.168.0.1", networks)
    assert not in_networks("unknown", networks)
    assert not in_networks("10.0.0.1", [])
    with pytest.raises(ValueError, match="readyz_detail_networks"):
        Settings(_env_file=None, readyz_detail_networks="10.0.0.300")
