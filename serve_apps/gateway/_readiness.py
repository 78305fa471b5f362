"""Readiness of the whole system as the gateway sees it: PostgreSQL, Kafka and every Serve app.

PostgreSQL is checked through the data app (gateway -> data -> PostgreSQL, two
hops), Kafka with a metadata request, the apps through Serve's status; all at
once, each within a short timeout, so ``/readyz`` answers fast even when a
component hangs.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ray import serve

from strata.actors.kafka import kafka_unavailable_reason

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 3.0
APPS = ("gateway", "auth", "users", "data", "audit")
SERVICES_WITH_OUTBOX = ("auth", "users", "data")


async def check_service(app: str) -> dict[str, Any]:
    """One service's readiness report (its database path and outbox backlog), one hop away."""
    try:
        handle = serve.get_app_handle(app)
        return dict(await asyncio.wait_for(handle.readiness.remote(), timeout=CHECK_TIMEOUT_S))
    except TimeoutError:
        return {"database": {"status": "down", "error": "timeout"}}
    except Exception as exc:  # noqa: BLE001 - any failure on the path means "not ready"
        return {"database": {"status": "down", "error": type(exc).__name__}}


async def check_kafka(bootstrap_servers: str) -> dict[str, Any]:
    reason = await kafka_unavailable_reason(bootstrap_servers, wait_s=CHECK_TIMEOUT_S)
    return {"status": "up"} if reason is None else {"status": "down", "error": reason}


def _app_states() -> dict[str, dict[str, Any]]:
    status = serve.status()
    return {
        name: {"status": app.status.value if hasattr(app.status, "value") else str(app.status)}
        for name, app in status.applications.items()
    }


async def check_apps() -> dict[str, dict[str, Any]]:
    try:
        states = await asyncio.wait_for(asyncio.to_thread(_app_states), timeout=CHECK_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001
        return {name: {"status": "UNKNOWN", "error": type(exc).__name__} for name in APPS}
    return {name: states.get(name, {"status": "NOT_DEPLOYED"}) for name in APPS}


async def readiness(bootstrap_servers: str) -> tuple[bool, dict[str, Any]]:
    """``(ready, body)``: ready when PostgreSQL and Kafka are up and every app is RUNNING."""
    kafka, apps, *services = await asyncio.gather(
        check_kafka(bootstrap_servers), check_apps(), *(check_service(app) for app in SERVICES_WITH_OUTBOX)
    )
    reports = dict(zip(SERVICES_WITH_OUTBOX, services, strict=True))
    # PostgreSQL as the data service reaches it: gateway -> data -> PostgreSQL, two hops.
    postgres = reports["data"]["database"]
    outbox = {app: report.get("outbox", {"error": "unknown"}) for app, report in reports.items()}
    ready = (
        postgres.get("status") == "up"
        and kafka.get("status") == "up"
        and all(app.get("status") == "RUNNING" for app in apps.values())
    )
    down = [name for name, c in (("postgres", postgres), ("kafka", kafka)) if c.get("status") != "up"]
    down += [name for name, app in apps.items() if app.get("status") != "RUNNING"]
    body = {
        "status": "ready" if ready else "unready",
        "down": down,
        "components": {"postgres": postgres, "kafka": kafka, "apps": apps, "outbox": outbox},
    }
    return ready, body
