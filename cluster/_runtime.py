"""Where a strata system runs and what its processes are told: the resolved settings, secrets and environments.

:func:`resolve` turns the settings an operator gave into the ones every process
receives (embedded servers' addresses, generated secrets filled in);
:func:`settings_env` and :func:`worker_env` carry them into other processes.
"""

from __future__ import annotations

import json
import os
import secrets
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from strata.actors.postgres import strip_password
from strata.cluster import _kafka, _ray
from strata.cluster._postgres import EmbeddedPostgres, EmbeddedStandby
from strata.cluster._state import State
from strata.cluster._tls import tls_dir
from strata.schemas import REGISTRY, Settings, component_secrets, credentials_file_of


@dataclass
class Runtime:
    """Where the running system is: the resolved settings every process receives, and its URLs."""

    settings: Settings
    gateway_url: str
    dashboard_url: str
    ray_address: str
    ray_auth_token: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    ca_file: Path | None = None
    """The CA that issued the gateway's certificate, when strata made it (clients pass it to verify TLS)."""

    def verify(self) -> ssl.SSLContext | bool:
        """What an HTTP client of the gateway verifies its certificate with (strata's CA, or the system's)."""
        return ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file is not None else True

    def ray_client_env(self) -> dict[str, str]:
        """Environment for a Ray driver (a script, a test) that connects to this system's cluster."""
        env = {"RAY_ADDRESS": self.ray_address}
        if self.ray_auth_token:
            env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.ray_auth_token)
        return env


def cache_dir() -> Path:
    """strata's cache (the Kafka jars): ``$XDG_CACHE_HOME/strata`` or ``~/.cache/strata``."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "strata"


def secrets_of(data_dir: Path, *, create: bool = True) -> dict[str, str]:
    """Secrets generated once per data dir (mode 0600): the master secret, the Ray token and the embedded servers'
    admin passwords (PostgreSQL's, and the Kafka broker's and admin principal's)."""
    path = data_dir / "secrets.json"
    values: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = {name: make() for name, make in _SECRETS.items() if name not in values}
    if not missing:
        return values
    if not create:
        return {**dict.fromkeys(_SECRETS, ""), **values}
    values.update(missing)
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(values, handle)
    os.replace(tmp, path)
    return values


_SECRETS: dict[str, Callable[[], str]] = {
    "secret_key": lambda: secrets.token_urlsafe(32),
    "postgres_password": lambda: secrets.token_urlsafe(24),
    "ray_auth_token": lambda: secrets.token_hex(32),  # the format Ray itself generates
    "kafka_broker_password": lambda: secrets.token_urlsafe(24),
    "kafka_admin_password": lambda: secrets.token_urlsafe(24),
    "postgres_replicator_password": lambda: secrets.token_urlsafe(24),
}


def _port(settings: Settings, state: State, name: str, configured: int) -> int:
    """The port of ``name`` (``configured`` if set) from ``state``; a port chosen for it is none that the settings
    give another server."""
    return state.port(name, configured, besides=_configured_ports(settings))


def _configured_ports(settings: Settings) -> set[int]:
    ports = (
        settings.postgres_port, settings.kafka_port, settings.ray_port, settings.ray_dashboard_port,
        settings.ray_metrics_port, settings.gateway_port, settings.serve_port, settings.haproxy_stats_port,
        settings.haproxy_metrics_port,
    )  # fmt: skip
    return {port for port in ports if port}


def postgres_server(settings: Settings, state: State, *, create: bool = True) -> EmbeddedPostgres:
    """The embedded PostgreSQL of ``settings`` under the data dir, on the port chosen once and kept in ``state``."""
    return EmbeddedPostgres(
        settings.data_dir / "postgres",
        port=_port(settings, state, "postgres", settings.postgres_port),
        admin_password=secrets_of(settings.data_dir, create=create)["postgres_password"],
    )


def postgres_standbys(settings: Settings, state: State, *, create: bool = True) -> list[EmbeddedStandby]:
    """The embedded PostgreSQL's standbys (``postgres_standbys`` of them), each under the data dir on its own port."""
    password = secrets_of(settings.data_dir, create=create)["postgres_password"]
    return [
        EmbeddedStandby(
            settings.data_dir / f"postgres-standby-{n}",
            port=_port(settings, state, f"postgres_standby_{n}", 0),
            admin_password=password,
            name=f"strata-standby-{n}",
            slot=f"strata_standby_{n}",
        )
        for n in range(settings.postgres_standbys)
    ]


def kafka_broker(settings: Settings, state: State, *, create: bool = True) -> _kafka.EmbeddedKafka:
    """The embedded Kafka broker of ``settings`` under the data dir, on the ports chosen once and kept in ``state``."""
    generated = secrets_of(settings.data_dir, create=create)
    return _kafka.EmbeddedKafka(
        settings.data_dir / "kafka",
        port=_port(settings, state, "kafka", settings.kafka_port),
        controller_port=_port(settings, state, "kafka_controller", 0),
        heap=settings.kafka_heap,
        cache_dir=cache_dir(),
        broker_password=generated["kafka_broker_password"],
        admin_password=kafka_admin_password(settings, generated),
    )


def kafka_admin_password(settings: Settings, generated: dict[str, str]) -> str:
    """The embedded broker's ``strata-admin`` password: the setting's, else the one generated into the data dir."""
    given = settings.kafka_admin_password
    return given.get_secret_value() if given is not None else generated["kafka_admin_password"]


def ray_head(settings: Settings, state: State) -> _ray.LocalRayHead:
    """The local Ray head of ``settings`` (its temp dir derived from the data dir), on the ports kept in ``state``."""
    return _ray.LocalRayHead(
        settings.data_dir,
        port=_port(settings, state, "ray", settings.ray_port),
        dashboard_port=_port(settings, state, "ray_dashboard", settings.ray_dashboard_port),
        agent_port=_port(settings, state, "ray_dashboard_agent", 0),
        client_server_port=_port(settings, state, "ray_client_server", 0),
        object_store_mb=settings.ray_object_store_mb,
        metrics_port=_port(settings, state, "ray_metrics", settings.ray_metrics_port),
    )


def resolve(settings: Settings, state: State, *, create: bool = True) -> Runtime:
    """The settings as every strata process must see them, with embedded servers' addresses filled in.

    ``create=False`` (for read-only commands) generates no secret that is missing.
    """
    settings = settings.model_copy(update={"data_dir": settings.data_dir.resolve()})
    update: dict[str, Any] = {}
    if settings.secret_key is None:
        update["secret_key"] = SecretStr(secrets_of(settings.data_dir, create=create)["secret_key"])
    if settings.embedded_postgres:
        update["database_url"] = SecretStr(postgres_server(settings, state, create=create).dsn)
        # Services read from the embedded standbys (their own roles; the address is all they take from these).
        # (model_copy validates nothing: the password is stripped here, so it never reaches a worker's environment.)
        update["database_replica_urls"] = [
            strip_password(standby.dsn) for standby in postgres_standbys(settings, state, create=create)
        ]
    if settings.embedded_kafka:
        broker = kafka_broker(settings, state, create=create)
        update.update(
            kafka_bootstrap_servers=broker.bootstrap_servers,
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_mechanism="SCRAM-SHA-512",
            kafka_username=None,
            kafka_password=None,
            kafka_ca_file=None,
            kafka_admin_password=SecretStr(
                kafka_admin_password(settings, secrets_of(settings.data_dir, create=create))
            ),
        )
    token = settings.ray_auth_token.get_secret_value() if settings.ray_auth_token else None
    if settings.local_ray:
        head = ray_head(settings, state)
        ray_address, dashboard_url = head.address, head.dashboard_url
        token = token or secrets_of(settings.data_dir, create=create)["ray_auth_token"] or None
    else:
        ray_address = settings.ray_address
        host = urlsplit(f"//{ray_address.removeprefix('ray://')}").hostname or "127.0.0.1"
        dashboard_url = f"http://{host}:{settings.ray_dashboard_port}"
        token = token or os.environ.get("RAY_AUTH_TOKEN")
    resolved = settings.model_copy(update=update)
    host = resolved.gateway_host if resolved.gateway_host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    local_ca = tls_dir(resolved) / "ca.pem" if resolved.tls_certfile is None else None
    env = worker_env(resolved)
    if settings.local_ray:
        env.update(serve_ingress_env(resolved, ray_head(resolved, state).temp_dir))
    return Runtime(
        settings=resolved,
        gateway_url=f"https://{host}:{resolved.gateway_port}",
        dashboard_url=dashboard_url,
        ray_address=ray_address,
        ray_auth_token=token,
        env=env,
        ca_file=local_ca,
    )


def serve_ingress_env(settings: Settings, temp_dir: Path) -> dict[str, str]:
    """Environment of the Ray head that selects Serve's ingress: HAProxy mode, with its files in the head's
    private temp dir (so `strata down` finds its process) and its ports from the settings."""
    if settings.ingress != "haproxy":
        return {}
    haproxy_dir = temp_dir / "haproxy"
    sockets = _ray.haproxy_socket_dir(settings.data_dir)
    return {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(haproxy_dir / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(sockets / "admin.sock"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(sockets / "metrics.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(haproxy_dir),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(haproxy_dir / "server-state"),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(settings.haproxy_stats_port),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(settings.haproxy_metrics_port),
        "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": str(settings.serve_log_buffer_records),
    }


def settings_env(settings: Settings) -> dict[str, str]:
    """``STRATA_*`` variables that reproduce ``settings`` in another process (Ray workers inherit them)."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"STRATA_{name.upper()}"] = json.dumps(value) if isinstance(value, dict | list) else str(value)
    return env


def worker_env(settings: Settings) -> dict[str, str]:
    """What every Ray worker gets: the settings, less the master secret and the admin passwords.

    Workers connect to PostgreSQL as their service's role and to Kafka as
    their component's principal, never as an admin, so the admin DSN reaches
    them without its password and the Kafka admin password not at all. The
    master secret, from which every component's passwords and keys derive,
    stays in the `strata` command: each Serve application is given its own
    component's secrets alone (:func:`write_credentials`).
    """
    env = settings_env(settings)
    env.pop("STRATA_RAY_AUTH_TOKEN", None)  # workers get Ray's own RAY_AUTH_TOKEN
    env.pop("STRATA_KAFKA_ADMIN_PASSWORD", None)
    env.pop("STRATA_SECRET_KEY", None)
    env.pop("STRATA_CREDENTIALS_FILE", None)
    if settings.database_url is not None:
        env["STRATA_DATABASE_URL"] = strip_password(settings.database_url.get_secret_value())
    return env


def write_credentials(settings: Settings) -> dict[str, Path]:
    """Each component's own derived secrets (:func:`~strata.schemas.component_secrets`), hex by label, into
    ``<data dir>/credentials/<component>.json`` (mode 0600, the directory 0700); returns the files by component.

    Each Serve application is pointed at its own file (``STRATA_CREDENTIALS_FILE`` in its ``runtime_env``, which
    the actors its replicas create inherit): no worker gets the master secret or another component's secrets in
    its environment, and Ray's logs, which show a ``runtime_env`` whole, see a path. Rewritten at each start, so
    a component that needs a new secret has it.
    """
    if settings.secret_key is None:
        raise ValueError("write_credentials needs the master secret (resolved settings)")
    files: dict[str, Path] = {}
    for spec in REGISTRY:
        path = credentials_file_of(settings.data_dir, spec.name)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        values = {label: settings.secret(label).hex() for label in component_secrets(spec.name)}
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(values, handle)
        os.replace(tmp, path)
        files[spec.name] = path
    return files
