"""How /readyz asks the services: one client per service with an outbox, any failure on the path shown as down."""

from __future__ import annotations

import asyncio
from typing import Any

from strata.schemas import DatabaseCheck, OutboxBacklog, ServiceReadiness, outbox_owners
from strata.serve_apps import ServiceClient
from strata.serve_apps.gateway._readiness import check_service, outbox_services
from strata.serve_apps.users import UsersClient


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
