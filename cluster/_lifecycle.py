"""`strata up`, `down`, `status` and `migrate`: start, stop and inspect every component, in order.

Order up: PostgreSQL -> roles and migrations -> Kafka -> Ray head -> Serve apps
-> the gateway's ``/readyz``. Down is the reverse. Each embedded component is
skipped when its setting points at an existing server. What was started is
recorded in ``<data_dir>/state.json`` (:mod:`strata.cluster._state`); a
component recorded but dead (a crashed run) is simply started again.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg

from strata.actors.kafka import consumer_group_lag, dlq_topic, ensure_topics, kafka_unavailable_reason
from strata.actors.outbox import backlog_query, backlog_report
from strata.actors.postgres import (
    apply_migrations,
    ensure_service_role,
    load_migrations,
    redact_dsn,
    service_migrations_dir,
    service_password,
)
from strata.cluster import _kafka, _ray, _serve
from strata.cluster._errors import PortInUse, StartupError, Unreachable
from strata.cluster._front import TlsFront
from strata.cluster._probes import http_ready, postgres_error, wait_until
from strata.cluster._runtime import (
    Runtime,
    cache_dir,
    kafka_broker,
    postgres_server,
    ray_head,
    resolve,
)
from strata.cluster._state import Recorded, State, answers, exclusive, port_in_use, terminate
from strata.cluster._tls import ensure_certificate
from strata.schemas import Settings, app_names, schema_owners
from strata.schemas.events import topics
from strata.serve_apps._groups import consumer_groups

Echo = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


OUTBOX_SERVICES = ("auth", "users", "data")


def event_topics() -> list[str]:
    """Every topic strata creates: the catalogue's and each consumer group's dead-letter topic."""
    return [*topics(), *(dlq_topic(group) for group in consumer_groups())]


# --- preflight ------------------------------------------------------------------------------------


def preflight(settings: Settings, state: State, runtime: Runtime) -> None:
    """Refuse, before starting anything, what would fail later: taken ports, missing tools, unreachable servers."""
    wanted: list[tuple[str, str, int]] = []
    if not _alive(state, "front") and not _alive(state, "ray"):
        wanted.append(("gateway", settings.gateway_host, settings.gateway_port))
    if settings.ingress == "haproxy" and not _alive(state, "ray"):
        wanted += [
            ("Serve's HAProxy", "127.0.0.1", settings.serve_port),
            ("Serve's HAProxy stats", "0.0.0.0", settings.haproxy_stats_port),
            ("Serve's HAProxy metrics", "0.0.0.0", settings.haproxy_metrics_port),
        ]
    if settings.embedded_postgres and not _alive(state, "postgres"):
        wanted.append(("PostgreSQL", "127.0.0.1", state.port("postgres", settings.postgres_port)))
    if settings.embedded_kafka and not _alive(state, "kafka"):
        wanted.append(("Kafka", "127.0.0.1", state.port("kafka", settings.kafka_port)))
        wanted.append(("Kafka controller", "127.0.0.1", state.port("kafka_controller", 0)))
    if settings.local_ray and not _alive(state, "ray"):
        head = ray_head(settings, state)
        wanted += [
            ("Ray GCS", "127.0.0.1", head.port),
            ("Ray dashboard", "127.0.0.1", head.dashboard_port),
            ("Ray dashboard agent", "127.0.0.1", head.agent_port),
            ("Ray client server", "127.0.0.1", head.client_server_port),
            ("Ray metrics export", "0.0.0.0", head.metrics_port),
        ]
    for what, host, port in wanted:
        if port_in_use(host, port):
            raise PortInUse(
                f"port {port} on {host} ({what}) is already in use; free it or choose another port in the settings"
            )
    if settings.embedded_kafka and not _alive(state, "kafka"):
        _kafka.find_java()
        if not _kafka.jars_resolved(cache_dir()):
            _kafka.find_maven()
    if not settings.embedded_postgres:
        dsn = runtime.settings.database_url.get_secret_value() if runtime.settings.database_url else ""
        reason = asyncio.run(postgres_error(dsn))
        if reason is not None:
            raise Unreachable(f"cannot reach PostgreSQL at {redact_dsn(dsn)}: {reason}")
    if not settings.embedded_kafka:
        reason = asyncio.run(kafka_unavailable_reason(settings.kafka_bootstrap_servers))
        if reason is not None:
            raise Unreachable(f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: {reason}")
    if not settings.local_ray:
        ray_host, _, ray_port = runtime.ray_address.removeprefix("ray://").rpartition(":")
        if not ray_port.isdigit() or not answers(ray_host or "127.0.0.1", int(ray_port)):
            raise Unreachable(f"cannot reach the Ray cluster at {runtime.ray_address}")


def _alive(state: State, name: str) -> bool:
    component = state.components.get(name)
    return component is not None and component.alive()


# --- migrations -----------------------------------------------------------------------------------


async def migrate_async(settings: Settings, echo: Echo = _quiet) -> dict[str, list[str]]:
    """Create each service's role and schema, then apply its pending migrations (admin DSN)."""
    assert settings.database_url is not None and settings.secret_key is not None
    applied: dict[str, list[str]] = {}
    conn = await asyncpg.connect(settings.database_url.get_secret_value(), timeout=10)
    try:
        for service in (spec.name for spec in schema_owners()):
            await ensure_service_role(conn, service, service_password(settings.secret_key.get_secret_value(), service))
            applied[service] = await apply_migrations(conn, service, load_migrations(service_migrations_dir(service)))
            for name in applied[service]:
                echo(f"  applied {service}/{name}")
    finally:
        await conn.close()
    return applied


# --- up -------------------------------------------------------------------------------------------


def up(settings: Settings, echo: Echo = print) -> Runtime:
    """Start whatever is not running yet and wait until the gateway is ready; harmless when all runs."""
    data_dir = settings.data_dir.resolve()
    with exclusive(data_dir):
        state = State.load(data_dir)
        runtime = resolve(settings, state)
        names = ["gateway"]
        names += ["postgres"] if settings.embedded_postgres else []
        names += ["kafka"] if settings.embedded_kafka else []
        names += ["ray"] if settings.local_ray else []
        if (
            all(_alive(state, n) for n in names if n != "gateway")
            and http_ready(runtime.gateway_url + "/healthz", verify=runtime.verify()) is None
        ):
            echo(f"strata is already running: {runtime.gateway_url}")
            return runtime
        _reap_stale(runtime, state, echo)
        preflight(settings, state, runtime)
        state.save(data_dir)
        started: list[str] = []
        try:
            _start_all(settings, state, runtime, started, echo)
        except BaseException:
            echo("start failed; stopping what this run started")
            _stop(runtime, state, only=started)
            state.save(data_dir)
            raise
        echo(f"strata is up: {runtime.gateway_url}")
        if runtime.ca_file is not None:
            echo(f"its certificate is issued by strata's local CA: {runtime.ca_file} (curl --cacert {runtime.ca_file})")
        return runtime


def _reap_stale(runtime: Runtime, state: State, echo: Echo) -> None:
    """Components a crashed run left half-alive: stop their leftovers so they start cleanly."""
    stale = [name for name, c in state.components.items() if c.procs and not c.alive()]
    if stale:
        echo(f"recovering from an earlier run that did not stop cleanly: {', '.join(stale)}")
        _stop(runtime, state, only=stale)


def _record(state: State, data_dir: Path, component: Recorded, started: list[str]) -> None:
    state.components[component.name] = component
    started.append(component.name)
    state.save(data_dir)


def _start_all(settings: Settings, state: State, runtime: Runtime, started: list[str], echo: Echo) -> None:
    data_dir = runtime.settings.data_dir
    timeout = settings.startup_timeout_s
    if settings.embedded_postgres and not _alive(state, "postgres"):
        pg = postgres_server(runtime.settings, state)
        echo(f"starting PostgreSQL on {pg.address}")
        pg.init()
        _record(state, data_dir, Recorded("postgres", pg.address, [pg.start()]), started)
        asyncio.run(pg.ensure_database())
    echo("applying migrations")
    asyncio.run(migrate_async(runtime.settings, echo))
    if settings.embedded_kafka and not _alive(state, "kafka"):
        broker = kafka_broker(runtime.settings, state)
        echo(f"starting Kafka on {broker.bootstrap_servers}")
        proc = broker.start(timeout=timeout)
        _record(state, data_dir, Recorded("kafka", broker.bootstrap_servers, [proc]), started)
        reason = wait_until(lambda: asyncio.run(kafka_unavailable_reason(broker.bootstrap_servers)), timeout)
        if reason is not None:
            raise StartupError(f"Kafka on {broker.bootstrap_servers} did not become ready: {reason}")
    created = asyncio.run(ensure_topics(runtime.settings, event_topics()))
    if created:
        echo(f"created topics: {', '.join(created)}")
    tls = ensure_certificate(runtime.settings)
    if settings.local_ray and not _alive(state, "ray"):
        head = ray_head(runtime.settings, state)
        echo(f"starting Ray head on {head.address} (dashboard {head.dashboard_url})")
        inherited = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
        env = {**inherited, **runtime.env, "RAY_USAGE_STATS_ENABLED": "0"}
        if runtime.ray_auth_token:
            # Token authentication on: the dashboard, GCS and clients all require it (workers inherit it).
            env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=runtime.ray_auth_token)
        procs = head.start(env, timeout=timeout)
        extra = {"dashboard": head.dashboard_url, "metrics": head.metrics_url}
        _record(state, data_dir, Recorded("ray", head.address, procs, extra), started)
    echo("deploying Serve applications")
    _serve.deploy(runtime.dashboard_url, _serve.serve_config(runtime.settings, tls=tls), runtime.ray_auth_token)
    _serve.wait_running(runtime.dashboard_url, runtime.ray_auth_token, list(app_names()), timeout)
    if settings.ingress == "haproxy" and not _alive(state, "front"):
        front = TlsFront(runtime.settings)
        echo(f"starting the TLS front on {front.address}")
        _record(state, data_dir, Recorded("front", front.address, [front.start(tls)]), started)
    state.components["gateway"] = Recorded("gateway", runtime.gateway_url)
    state.save(data_dir)
    verify = runtime.verify()
    reason = wait_until(lambda: http_ready(runtime.gateway_url + "/readyz", verify=verify), timeout)
    if reason is not None:
        raise StartupError(f"the gateway at {runtime.gateway_url} is not ready: {reason}")


# --- down -----------------------------------------------------------------------------------------


def down(settings: Settings, echo: Echo = print) -> list[int]:
    """Stop what strata started, in reverse order; returns the pids it stopped."""
    data_dir = settings.data_dir.resolve()
    if not data_dir.exists():
        echo("strata is not running")
        return []
    with exclusive(data_dir):
        state = State.load(data_dir)
        runtime = resolve(settings, state)
        pids = _stop(runtime, state, only=None, echo=echo)
        state.save(data_dir)
        return pids


def _stop(runtime: Runtime, state: State, only: list[str] | None, echo: Echo = _quiet) -> list[int]:
    settings = runtime.settings
    stopped: list[int] = []

    def wanted(name: str) -> bool:
        return name in state.components and (only is None or name in only)

    if wanted("front") or (only is not None and "ray" in only and "front" in state.components):
        echo("stopping the TLS front")
        procs = state.components["front"].procs
        terminate(procs, timeout=10)
        stopped += [p.pid for p in procs]
        state.components.pop("front")

    if settings.local_ray and (wanted("ray") or only is None):
        head = ray_head(settings, state)
        recorded = state.components["ray"].procs if "ray" in state.components else []
        ray_procs = {p.pid: p for p in [*recorded, *_ray.find_processes(head.temp_dir, gcs_port=head.port)]}
        if any(p.alive() for p in ray_procs.values()):
            echo("stopping Serve and the Ray head")
            if "ray" in state.components and state.components["ray"].alive():
                # Gently first, so replicas close their pools; a half-dead head is just stopped.
                _serve.shutdown(runtime.dashboard_url, runtime.ray_auth_token, timeout=30)
            terminate(list(ray_procs.values()), timeout=15)
            stopped += list(ray_procs)
        shutil.rmtree(_ray.haproxy_socket_dir(settings.data_dir), ignore_errors=True)
        state.components.pop("ray", None)
    if only is None or "ray" in only:
        state.components.pop("gateway", None)
    if wanted("kafka"):
        echo("stopping Kafka")
        procs = state.components["kafka"].procs
        terminate(procs, timeout=30)
        stopped += [p.pid for p in procs]
        state.components.pop("kafka")
    if wanted("postgres"):
        echo("stopping PostgreSQL")
        pg = postgres_server(settings, state)
        pg.stop()
        procs = state.components["postgres"].procs
        terminate(procs, timeout=10)
        stopped += [p.pid for p in procs]
        state.components.pop("postgres")
    return stopped


# --- one component ------------------------------------------------------------------------------


def stop_component(settings: Settings, name: str) -> None:
    """Stop one embedded server (``postgres`` or ``kafka``) and keep the rest running."""
    data_dir = settings.data_dir.resolve()
    with exclusive(data_dir):
        state = State.load(data_dir)
        runtime = resolve(settings, state)
        _stop(runtime, state, only=[name])
        state.save(data_dir)


def start_component(settings: Settings, name: str) -> None:
    """Start one embedded server (``postgres`` or ``kafka``) again, on its recorded port and data."""
    if name not in ("postgres", "kafka"):
        raise ValueError(f"cannot start {name!r} alone; use `strata up`")
    data_dir = settings.data_dir.resolve()
    with exclusive(data_dir):
        state = State.load(data_dir)
        if _alive(state, name):
            return
        runtime = resolve(settings, state)
        if name == "postgres":
            pg = postgres_server(runtime.settings, state)
            state.components[name] = Recorded(name, pg.address, [pg.start()])
        else:
            broker = kafka_broker(runtime.settings, state)
            state.components[name] = Recorded(name, broker.bootstrap_servers, [broker.start()])
        state.save(data_dir)


# --- status ---------------------------------------------------------------------------------------


def status(settings: Settings) -> dict[str, Any]:
    """Each component (pid, address, state) and each Serve app with its deployments."""
    data_dir = settings.data_dir.resolve()
    state = State.load(data_dir)
    runtime = resolve(settings, state, create=False)
    components: list[dict[str, Any]] = []
    for name in ("postgres", "kafka", "ray", "front"):
        component = state.components.get(name)
        if name == "front" and settings.ingress != "haproxy":
            continue
        external = {
            "postgres": not settings.embedded_postgres,
            "kafka": not settings.embedded_kafka,
            "ray": not settings.local_ray,
            "front": False,
        }[name]
        if external:
            address = {
                "postgres": redact_dsn(runtime.settings.database_url.get_secret_value())
                if runtime.settings.database_url
                else "",
                "kafka": settings.kafka_bootstrap_servers,
                "ray": settings.ray_address,
            }[name]
            components.append({"name": name, "pids": [], "address": address, "state": "external"})
        elif component is None:
            components.append({"name": name, "pids": [], "address": "", "state": "stopped"})
        else:
            alive = [p.pid for p in component.procs if p.alive()]
            components.append(
                {"name": name, "pids": alive, "address": component.address, "state": "running" if alive else "dead"}
            )
    events = asyncio.run(_event_status(runtime.settings)) if runtime.settings.secret_key else {}
    ready = http_ready(runtime.gateway_url + "/readyz", timeout=5.0, verify=runtime.verify())
    components.append(
        {
            "name": "gateway",
            "pids": [],
            "address": runtime.gateway_url,
            "state": "ready" if ready is None else f"not ready ({ready})",
        }
    )
    return {
        "components": components,
        "apps": _serve.applications(runtime.dashboard_url, runtime.ray_auth_token),
        "events": events,
        "dashboard": runtime.dashboard_url,
        "metrics": state.components["ray"].extra.get("metrics", "") if "ray" in state.components else "",
    }


def status_metrics_url(settings: Settings) -> str:
    """Where the local Ray head serves Prometheus metrics (empty with an external Ray cluster)."""
    ray = State.load(settings.data_dir.resolve()).components.get("ray")
    return str(ray.extra.get("metrics", "")) if ray is not None else ""


async def _event_status(settings: Settings) -> dict[str, Any]:
    """Outbox backlog per service (admin connection) and lag per consumer group (Kafka admin), each bounded."""
    outbox: dict[str, Any] = {}
    try:
        assert settings.database_url is not None
        conn = await asyncpg.connect(settings.database_url.get_secret_value(), timeout=3)
        try:
            for service in OUTBOX_SERVICES:
                outbox[service] = backlog_report(await conn.fetchrow(backlog_query(service)))
        finally:
            await conn.close()
    except Exception as exc:  # noqa: BLE001 - status reports what it cannot see
        outbox = {"error": f"{type(exc).__name__}"}
    consumers: dict[str, Any] = {}
    for group, group_topics in consumer_groups().items():
        try:
            lag = await asyncio.wait_for(
                consumer_group_lag(settings.kafka_bootstrap_servers, group, group_topics), timeout=10
            )
            consumers[group] = {"lag": lag["total"], "partitions": lag["partitions"]}
        except Exception as exc:  # noqa: BLE001
            consumers[group] = {"error": type(exc).__name__}
    return {"outbox": outbox, "consumers": consumers}


__all__ = [
    "down",
    "migrate_async",
    "preflight",
    "start_component",
    "status",
    "stop_component",
    "up",
]
