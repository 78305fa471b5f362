"""`strata status`: one row per lifecycle component, the gateway's readiness, the Serve apps and each deployment
(:mod:`strata.cluster._deployments`), the event backlog.

Read-only: it generates no missing secret and saves no state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg

from strata.actors.kafka import consumer_group_lag
from strata.actors.outbox import backlog_query, backlog_report
from strata.cluster import _serve
from strata.cluster._component import GATEWAY, Component, Context, StatusRow
from strata.cluster._components import RayHeadComponent, components_of
from strata.cluster._deployments import deployment_status
from strata.cluster._probes import http_ready
from strata.cluster._runtime import resolve
from strata.cluster._state import State
from strata.schemas import Settings, consumer_groups, outbox_owners


def status_rows(components: Sequence[Component], state: State) -> list[StatusRow]:
    """One row per component, in start order (none for a component this mode does not have)."""
    rows = (component.status(state.components.get(component.name)) for component in components)
    return [row for row in rows if row is not None]


def status(settings: Settings) -> dict[str, Any]:
    """Each component (pid, address, state), each Serve app, and each deployment with its replicas."""
    data_dir = settings.data_dir.resolve()
    state = State.load(data_dir)
    runtime = resolve(settings, state, create=False)
    context = Context(settings, runtime, state)
    components = [row.as_dict() for row in status_rows(components_of(context), state)]
    events = asyncio.run(_event_status(runtime.settings)) if runtime.settings.secret_key else {}
    replication = asyncio.run(_replication_status(runtime.settings)) if runtime.settings.database_url else []
    ready = http_ready(runtime.gateway_url + "/readyz", timeout=5.0, verify=runtime.verify())
    components.append(
        {
            "name": GATEWAY,
            "pids": [],
            "address": runtime.gateway_url,
            "state": "ready" if ready is None else f"not ready ({ready})",
        }
    )
    return {
        "components": components,
        "apps": _serve.applications(runtime.dashboard_url, runtime.ray_auth_token),
        "deployments": deployment_status(runtime),
        "events": events,
        "replication": replication,
        "dashboard": runtime.dashboard_url,
        "metrics": _metrics_url(state),
    }


def status_metrics_url(settings: Settings) -> str:
    """Where the local Ray head serves Prometheus metrics (empty with an external Ray cluster)."""
    return _metrics_url(State.load(settings.data_dir.resolve()))


def _metrics_url(state: State) -> str:
    # Recorded by the head when it started (the port may have been chosen then).
    ray = state.components.get(RayHeadComponent.name)
    return str(ray.extra.get("metrics", "")) if ray is not None else ""


REPLICATION_QUERY = (
    "SELECT application_name AS name, state, client_addr::text AS address,"
    " pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS lag_bytes,"
    " extract(epoch FROM replay_lag)::float8 AS lag_s"
    " FROM pg_stat_replication ORDER BY application_name"
)
"""Each standby streaming from the primary: its state, and how far its replay is behind, in bytes and seconds
(``replay_lag`` is null while the standby has had nothing to replay recently: it is then caught up)."""


async def _replication_status(settings: Settings) -> list[dict[str, Any]]:
    """The standbys streaming from the primary, as ``pg_stat_replication`` shows them (admin connection, bounded)."""
    assert settings.database_url is not None
    try:
        conn = await asyncpg.connect(settings.database_url.get_secret_value(), timeout=3)
        try:
            return [dict(row) for row in await conn.fetch(REPLICATION_QUERY, timeout=3)]
        finally:
            await conn.close()
    except Exception as exc:  # noqa: BLE001 - status reports what it cannot see
        return [{"error": type(exc).__name__}]


async def _event_status(settings: Settings) -> dict[str, Any]:
    """Outbox backlog per service (admin connection) and lag per consumer group (Kafka admin), each bounded."""
    outbox: dict[str, Any] = {}
    try:
        assert settings.database_url is not None
        conn = await asyncpg.connect(settings.database_url.get_secret_value(), timeout=3)
        try:
            for spec in outbox_owners():
                outbox[spec.name] = backlog_report(await conn.fetchrow(backlog_query(spec.name)))
        finally:
            await conn.close()
    except Exception as exc:  # noqa: BLE001 - status reports what it cannot see
        outbox = {"error": f"{type(exc).__name__}"}
    consumers: dict[str, Any] = {}
    for _, group in consumer_groups():
        try:
            lag = await asyncio.wait_for(consumer_group_lag(settings, group.group, list(group.topics)), timeout=10)
            consumers[group.group] = {"lag": lag["total"], "partitions": lag["partitions"]}
        except Exception as exc:  # noqa: BLE001
            consumers[group.group] = {"error": type(exc).__name__}
    return {"outbox": outbox, "consumers": consumers}
