"""The one settings model of strata.

Every knob is read from ``STRATA_*`` environment variables or a ``.env`` file,
once, by whoever starts a process (the CLI, a Serve replica, an actor); the
object is then passed down. Defaults run everything locally on loopback.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, PrivateAttr, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from strata.schemas._registry import DatabaseBackend, app_names, schema_owners, service_spec
from strata.schemas._secrets import (
    CONSISTENCY_TOKEN_KEY,
    EDGE_TOKEN,
    SecretNotHeld,
    credentials_file_of,
    derive_secret,
    key_secret,
    postgres_role_secret,
)

Port = Annotated[int, Field(ge=0, le=65535)]
KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]
RateLimitClass = Literal["auth", "refresh", "read", "write"]
"""Rate-limit classes with a quota (routes of class ``none`` are never limited)."""

_RATE_LIMIT = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*s?\s*$")


def _parse_rate_limit(text: str, name: str) -> tuple[int, float]:
    match = _RATE_LIMIT.match(text)
    if match is None:
        raise ValueError(f"{name}={text!r} is not of the form '<quota>/<window seconds>s', e.g. '100/60s'")
    quota, window_s = int(match.group(1)), float(match.group(2))
    if quota < 1 or window_s <= 0:
        raise ValueError(f"{name}={text!r}: the quota must be at least 1 and the window longer than 0 s")
    return quota, window_s


def _parse_networks(
    text: str, setting: str = "rate_limit_exempt"
) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise ValueError(f"{setting}: {item!r} is not an IP network ({exc})") from exc
    return networks


class Settings(BaseSettings):
    """Configuration of a strata deployment; see the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix="STRATA_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    data_dir: Path = Field(
        default=Path(".strata"),
        description="Where embedded servers keep their data and logs, and strata its run state and secrets.",
    )
    database_url: SecretStr | None = Field(
        default=None,
        description=(
            "Admin DSN of an existing PostgreSQL (postgresql://user:pass@host:port/db); the role needs"
            " CREATEROLE to create one role per service. Empty: strata runs an embedded PostgreSQL."
        ),
    )
    postgres_port: Port = Field(
        default=0, description="TCP port of the embedded PostgreSQL on 127.0.0.1; 0 picks a free one once and keeps it."
    )
    postgres_standbys: int = Field(
        default=1,
        ge=0,
        le=4,
        description=(
            "Streaming standbys of the embedded PostgreSQL that `strata up` starts (pg_basebackup -R, a replication"
            " slot each, on loopback). 0: none. With STRATA_DATABASE_URL, strata starts none."
        ),
    )
    database_replica_urls: list[str] = Field(
        default_factory=list,
        description=(
            "Read replicas (streaming standbys) of STRATA_DATABASE_URL's PostgreSQL, JSON such as"
            ' ["postgresql://replica1:5432/strata"]; each service connects with its own role, so user and password'
            " here are ignored. Empty with the embedded PostgreSQL: its standbys."
        ),
    )
    replica_read_wait_s: float = Field(
        default=0.05,
        ge=0,
        le=5,
        description=(
            "How long a read carrying a consistency token waits for a standby to replay that position, seconds;"
            " past it the read goes to the primary."
        ),
    )
    replica_max_lag_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=0,
        description="A standby further behind the primary than this many WAL bytes leaves read rotation.",
    )
    replica_max_lag_s: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description=(
            "A standby further behind the primary than this, seconds, leaves read rotation; it comes back within half"
            " of both bounds. Also how stale a read without a token may be."
        ),
    )
    replica_poll_s: float = Field(
        default=0.25, gt=0, le=10, description="How often each service replica polls the primary and its standbys."
    )
    kafka_bootstrap_servers: str = Field(
        default="",
        description="Bootstrap servers of an existing Kafka (host:port,...). Empty: strata runs an embedded Kafka.",
    )
    kafka_port: Port = Field(
        default=0, description="Client port of the embedded Kafka on 127.0.0.1; 0 picks a free one once and keeps it."
    )
    kafka_heap: str = Field(
        default="512m", pattern=r"^\d+[mMgG]$", description="JVM heap of the embedded Kafka broker (-Xmx)."
    )
    kafka_security_protocol: KafkaSecurityProtocol = Field(
        default="PLAINTEXT",
        description=(
            "How every strata client talks to an existing Kafka: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
            " strata's embedded broker always uses SASL_PLAINTEXT on loopback, whatever this says."
        ),
    )
    kafka_sasl_mechanism: KafkaSaslMechanism = Field(
        default="SCRAM-SHA-512",
        description="SASL mechanism with an existing Kafka: SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN.",
    )
    kafka_username: str | None = Field(
        default=None,
        description=(
            "SASL username every strata client uses with an existing Kafka. Empty with a SASL protocol: each component"
            " authenticates as its own principal strata-<component> (as with the embedded broker)."
        ),
    )
    kafka_password: SecretStr | None = Field(default=None, description="SASL password of kafka_username.")
    kafka_ca_file: Path | None = Field(
        default=None,
        description="PEM CA bundle that verifies the brokers' certificates (SSL, SASL_SSL). Empty: the system's CAs.",
    )
    kafka_admin_password: SecretStr | None = Field(
        default=None,
        description=(
            "Password of the embedded broker's admin principal strata-admin (topics, ACLs, principals). Empty:"
            " generated once into the data dir. Never given to Ray workers."
        ),
    )
    ray_address: str = Field(
        default="",
        description="Address of an existing Ray cluster (host:port or ray://...). Empty: strata starts a local head.",
    )
    ray_auth_token: SecretStr | None = Field(
        default=None,
        description=(
            "Token of Ray's token authentication (RAY_AUTH_MODE=token) for the dashboard and cluster calls. Empty:"
            " generated once into the data dir for the local head; for an existing cluster, RAY_AUTH_TOKEN."
        ),
    )
    ray_port: Port = Field(default=0, description="GCS port of the local Ray head; 0 picks a free one once.")
    ray_dashboard_port: Port = Field(
        default=8265, description="Dashboard port of the local Ray head (serve status and deploys go through it)."
    )
    ray_metrics_port: Port = Field(
        default=0,
        description=(
            "Port where the local Ray head's metrics agent serves Prometheus metrics (Ray's, Serve's and strata's);"
            " 0 picks a free one once and keeps it."
        ),
    )
    ray_object_store_mb: int = Field(
        default=256, ge=80, description="Object store size of the local Ray head, in MiB; kept small on purpose."
    )
    gateway_host: str = Field(default="127.0.0.1", description="Address the public HTTPS endpoint listens on.")
    gateway_port: Port = Field(
        default=8000, description="Port of the public HTTPS endpoint (the TLS front, or Serve's proxy with TLS)."
    )
    ingress: Literal["haproxy", "python"] = Field(
        default="haproxy",
        description=(
            "How HTTP reaches the gateway: 'haproxy' (strata's TLS front, then Serve's HAProxy balancing the gateway"
            " replicas by least connections) or 'python' (Serve's Python proxy terminating TLS itself)."
        ),
    )
    serve_port: Port = Field(
        default=8001,
        description="Port of Serve's own HTTP ingress on 127.0.0.1 behind the TLS front (ingress=haproxy only).",
    )
    haproxy_stats_port: Port = Field(
        default=8404, description="Stats port of Serve's HAProxy (it binds every interface: firewall it)."
    )
    haproxy_metrics_port: Port = Field(
        default=9101, description="Prometheus port of Serve's HAProxy (it binds every interface: firewall it)."
    )
    serve_log_buffer_records: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description=(
            "Log records a Serve replica keeps in memory before writing them to its file (ingress=haproxy; Serve's"
            " throughput default is 1000, written when full or at an ERROR record). 1 writes each record at once, at"
            " the cost of one write per record: `make run` and the test suite use 1."
        ),
    )
    tls_certfile: Path | None = Field(
        default=None,
        description="PEM server certificate (with its chain) of the HTTPS endpoint. Empty: a local CA issues one.",
    )
    tls_keyfile: Path | None = Field(default=None, description="PEM private key of tls_certfile.")
    min_replicas: dict[str, int] = Field(
        default_factory=dict,
        description='Lower bound of replicas per Serve deployment\'s app, JSON such as {"gateway": 2}.',
    )
    cpu_scaling_target: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description=(
            "CPU share (of one core) per replica that CPU-scaled deployments aim at; empty: serve.yaml's"
            " policy_kwargs target (0.7)."
        ),
    )
    max_replicas: dict[str, int] = Field(
        default_factory=dict,
        description=(
            'Upper bound of replicas of an app\'s autoscaling deployments, JSON such as {"data": 4} (never below the'
            " lower bound; a fixed-size deployment keeps its num_replicas)."
        ),
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description=(
            "Master secret from which per-service database passwords and Kafka principals' passwords are"
            " derived. Empty: generated once into the data dir (mode 0600). Never given to Ray workers."
        ),
    )
    credentials_file: Path | None = Field(
        default=None,
        description=(
            "Set by strata for each Serve application: a JSON file (mode 0600) of the secrets derived for that"
            " component alone, by label. A process without the master secret takes its secrets from there."
        ),
    )
    _held: dict[str, bytes] = PrivateAttr(default_factory=dict)
    db_backends: dict[str, DatabaseBackend] = Field(
        default_factory=dict,
        description=(
            'Database backend per service, JSON such as {"data": "actors"}: "replica" (an asyncpg pool in'
            ' each Serve replica, the default) or "actors" (named pool actors).'
        ),
    )
    db_connections_per_service: int = Field(
        default=12,
        ge=1,
        description=(
            "Connection budget of one service's replicas together: each replica's pool holds at most"
            " this divided by the deployment's maximum replicas."
        ),
    )
    db_pool_actors: int = Field(
        default=2, ge=1, le=64, description="Named PostgreSQL pool actors per service that uses the actor backend."
    )
    db_pool_actor_connections: int = Field(
        default=12, ge=1, description="Connection budget of one service's pool actors together (split evenly)."
    )
    db_command_timeout_s: float = Field(default=10.0, gt=0, description="Timeout of one database command, seconds.")
    kafka_partitions: int = Field(
        default=3, ge=1, le=1000, description="Partitions of each event topic strata creates."
    )
    kafka_replication_factor: int = Field(
        default=1, ge=1, le=7, description="Replication factor of each topic strata creates (1 on one broker)."
    )
    kafka_retention_hours: int = Field(
        default=168, ge=1, description="How long event topics keep messages (retention.ms), in hours."
    )
    outbox_relays: int = Field(
        default=1, ge=1, le=64, description="Relay actors per service outbox; each owns the rows of a share of keys."
    )
    outbox_batch_size: int = Field(default=200, ge=1, le=10_000, description="Outbox rows a relay publishes per batch.")
    outbox_poll_interval_s: float = Field(
        default=1.0, gt=0, description="How often a relay looks for rows when no NOTIFY woke it, seconds."
    )
    outbox_retention_hours: float = Field(
        default=24.0, gt=0, description="Sent outbox rows older than this are pruned, hours."
    )
    relay_command_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description=(
            "Timeout of one command on an outbox relay's database connection, seconds: past it the relay drops"
            " the connection (and its share of the outbox) and serves it again after a pause."
        ),
    )
    consumer_max_attempts: int = Field(
        default=5, ge=1, le=100, description="Attempts at an event's effect before it goes to the dead-letter topic."
    )
    consumer_retry_backoff_s: float = Field(
        default=0.2, gt=0, description="First pause between attempts at an event's effect (doubles each time), seconds."
    )
    max_body_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="Largest request body the gateway reads, bytes; a larger one is answered 413 before it is read.",
    )
    request_deadline_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description=(
            "Time the gateway gives one request, seconds; past it the work is cancelled and the answer is 504. A client"
            " may ask for less with a `Request-Timeout` header (e.g. `2.5`, `2.5s` or `250ms`), never for more."
        ),
    )
    cors_allow_origins: list[str] = Field(
        default_factory=list,
        description=(
            'Origins allowed to call the API from a browser, JSON such as ["https://app.example.com"]. Empty: no CORS'
            " headers at all (browsers then refuse cross-origin calls)."
        ),
    )
    token_issuer: str = Field(default="strata", min_length=1, description="`iss` of access tokens.")
    token_audience: str = Field(default="strata-api", min_length=1, description="`aud` of access tokens.")
    token_algorithm: Literal["EdDSA", "RS256"] = Field(
        default="EdDSA", description="Signature algorithm of access tokens (Ed25519, or RSA 2048 with RS256)."
    )
    access_token_ttl_s: int = Field(default=300, ge=30, le=3600, description="Lifetime of an access token, seconds.")
    refresh_token_ttl_s: int = Field(
        default=30 * 24 * 3600, ge=300, description="Lifetime of a refresh token (and its family), seconds."
    )
    refresh_rate_per_family: str = Field(
        default="10/60s",
        description=(
            "Refreshes one session (a refresh-token family) may make: '<quota>/<window seconds>s', a bucket refilled"
            " over the window, kept in the database and shared by every auth replica. A client refreshes about once"
            " per access_token_ttl_s; past it the refresh answers 429 with Retry-After and the token stays valid."
        ),
    )
    refresh_rate_per_account: str = Field(
        default="60/60s",
        description=(
            "Refreshes all the sessions of one account may make together ('<quota>/<window seconds>s'), so many"
            " logins of one account do not multiply its allowance. Past it: 429 with Retry-After."
        ),
    )
    refresh_reuse_grace_s: float = Field(
        default=5.0,
        ge=0,
        le=60,
        description=(
            "Grace window of a retried refresh, seconds: the refresh token just rotated, presented again this soon"
            " (a client that lost the answer), gets the same child again instead of revoking the session, while"
            " that child is unused and the session live. 0 turns it off; any other reuse still revokes the session."
        ),
    )
    token_leeway_s: int = Field(
        default=5, ge=0, le=60, description="Clock skew tolerated when checking exp/nbf/iat, seconds."
    )
    revocation_feed_stale_after_s: float = Field(
        default=10.0,
        ge=1.0,
        le=300.0,
        description=(
            "A gateway replica whose revocation feed has not heard from Kafka for this long refuses authenticated"
            " requests (503) and fails its health check, so it leaves rotation (fail closed), seconds. The feed"
            " hears from the broker about twice a second while Kafka is up."
        ),
    )
    argon2_time_cost: int = Field(default=2, ge=1, le=20, description="argon2id iterations (t).")
    argon2_memory_kib: int = Field(
        default=19_456, ge=8_192, le=1_048_576, description="argon2id memory (m), KiB; 19 MiB is OWASP's minimum."
    )
    argon2_parallelism: int = Field(default=1, ge=1, le=16, description="argon2id lanes (p).")
    rate_limit_auth: str = Field(
        default="20/60s",
        description=(
            "Rate limit of the auth routes (register, login, password change) per client address or user:"
            " '<quota>/<window seconds>s', a bucket of quota requests refilled over the window."
        ),
    )
    rate_limit_refresh: str = Field(
        default="600/60s",
        description=(
            "Flood guard of POST /v1/auth/refresh per client address, a bucket of its own (failed logins never"
            " spend it), sized for many clients behind one address; the limits that count are per session and per"
            " account (refresh_rate_per_family, refresh_rate_per_account)."
        ),
    )
    rate_limit_read: str = Field(
        default="600/60s", description="Rate limit of reads (GET) per user, or per client address when anonymous."
    )
    rate_limit_write: str = Field(
        default="120/60s", description="Rate limit of the other changes (POST, PUT, PATCH, DELETE) per user or address."
    )
    rate_limit_shards: int = Field(
        default=2, ge=1, le=64, description="Rate-limit actors sharing the buckets (keys spread by a stable hash)."
    )
    rate_limit_lease_fraction: float = Field(
        default=0.1,
        gt=0,
        le=0.5,
        description="Largest share of a quota a gateway replica leases at a time (fewer as a bucket runs low).",
    )
    rate_limit_exempt: str = Field(
        default="",
        description=(
            "Client networks never rate-limited, comma-separated, such as '10.0.0.0/8,192.168.1.7' (monitoring,"
            " trusted batch clients); matched against the client address, whatever the identity."
        ),
    )
    readyz_cache_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description=(
            "How long a gateway replica reuses its last readiness check, seconds: /readyz costs at most one check"
            " (Kafka, Serve, actors, each service's database) per replica per this many seconds, however often it"
            " is called; callers arriving during a check share it."
        ),
    )
    readyz_detail_networks: str = Field(
        default="",
        description=(
            "Client networks, comma-separated ('10.0.0.0/8,127.0.0.1'), that get /readyz's details (components,"
            " addresses, errors) without a token. Anyone else gets the status alone unless their access token grants"
            " 'ops:read'. Empty (the default): only the permission counts."
        ),
    )
    login_free_failures: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Failed logins of one account from one client (address, IPv6 /64) before that pair backs off.",
    )
    login_lock_after: int = Field(
        default=10,
        ge=2,
        le=1000,
        description=(
            "Failed logins of one account from one client after which that pair (only) is locked for login_lock_s:"
            " the account stays open to every other client, the client to every other account."
        ),
    )
    login_lock_s: int = Field(
        default=900, ge=1, description="How long a locked (account, client) pair stays locked, s."
    )
    login_account_free_failures: int = Field(
        default=10,
        ge=1,
        le=1000,
        description=(
            "Failed logins of one account, from any client, before its attempts back off (1 s, 2 s, 4 s, ... up to"
            " login_max_backoff_s; never a lock, so nobody can keep an account locked)."
        ),
    )
    login_client_free_failures: int = Field(
        default=20,
        ge=1,
        le=10_000,
        description=(
            "Failed logins from one client, on any account, before its attempts on accounts that have failures of"
            " their own back off (up to login_max_backoff_s); a login to an account nobody failed on is never held."
        ),
    )
    login_max_backoff_s: int = Field(
        default=60,
        ge=1,
        le=3600,
        description=(
            "Cap of the login backoff, s: the longest an account's owner, or a client, ever waits for its next"
            " attempt, however many failures piled up."
        ),
    )
    login_failure_window_s: int = Field(
        default=900, ge=1, description="Failures older than this no longer count, seconds."
    )
    data_item_partitions: int = Field(
        default=8,
        ge=1,
        le=256,
        description=(
            "Hash partitions of the data service's items table. Read once, when the data migration that creates"
            " the table first runs; changing it later changes nothing (docs/data.md says how to repartition)."
        ),
    )
    data_max_attributes_bytes: int = Field(
        default=16 * 1024, ge=256, le=1024 * 1024, description="Largest item `attributes` object, bytes of JSON."
    )
    data_max_json_depth: int = Field(
        default=16, ge=2, le=64, description="Deepest nesting of an item's `attributes` and of an item schema."
    )
    data_max_schema_bytes: int = Field(
        default=16 * 1024, ge=256, le=256 * 1024, description="Largest collection `item_schema`, bytes of JSON."
    )
    data_max_batch_items: int = Field(
        default=100, ge=1, le=1000, description="Most items one batch create may hold (all are created or none)."
    )
    data_max_validation_steps: int = Field(
        default=200_000,
        ge=1_000,
        le=10_000_000,
        description=(
            "Steps (keyword evaluations) one request may spend checking its items against their collection's"
            " `item_schema`, all its items together (about 2 microseconds of one core each); past it, 422"
            " `too-complex`. A schema is accepted only if an empty object costs at most this divided by"
            " `data_max_batch_items`."
        ),
    )
    data_max_page_size: int = Field(
        default=200, ge=1, le=1000, description="Most rows one page of collections, members or items may hold."
    )
    data_stats_max_items: int = Field(
        default=100_000, ge=1, le=10_000_000, description="Most items `/stats` reads of one collection (the oldest)."
    )
    data_stats_max_tags: int = Field(default=100, ge=1, le=10_000, description="Most tags `/stats` answers.")
    data_stats_max_distinct_tags: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description="Most distinct tags `/stats` counts while it reads a collection (the first seen; at least"
        " `data_stats_max_tags`): bounds its memory whatever the items' tags; past it the answer says `tags_partial`.",
    )
    data_stats_max_attributes: int = Field(
        default=64, ge=1, le=1000, description="Most numeric attributes `/stats` summarizes (the first seen)."
    )
    data_stats_cache_entries: int = Field(
        default=256, ge=0, le=100_000, description="Collections whose `/stats` each processing replica keeps (0: none)."
    )
    idempotency_key_ttl_s: int = Field(
        default=24 * 3600,
        ge=60,
        le=30 * 24 * 3600,
        description="How long a POST's Idempotency-Key is remembered (its first answer replayed), seconds.",
    )
    idempotency_wait_s: float = Field(
        default=2.0,
        ge=0,
        le=30,
        description=(
            "How long a retry waits for the first request with its Idempotency-Key to finish before answering 409,"
            " seconds."
        ),
    )
    fault_injection: bool = Field(
        default=False,
        description=(
            "Test only: every deployment accepts inject_fault() handle calls (slow a replica down, fail its health"
            " check) and reports which replica served. Off, those calls are refused."
        ),
    )
    startup_timeout_s: float = Field(
        default=180.0, gt=0, description="How long `strata up` waits for every component to become ready."
    )

    @field_validator("cors_allow_origins")
    @classmethod
    def _origins_are_origins(cls, value: list[str]) -> list[str]:
        bad = [o for o in value if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?", o)]
        if bad:
            raise ValueError(f"cors_allow_origins takes scheme://host[:port] origins without a path or '*': {bad}")
        return value

    @field_validator("database_replica_urls")
    @classmethod
    def _replica_addresses(cls, value: list[str]) -> list[str]:
        """Each replica as ``postgresql://host:port/db``: credentials are dropped (services use their own role), so
        no password travels to the processes the settings reach."""
        addresses = []
        for url in value:
            parts = urlsplit(url)
            if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
                raise ValueError(f"database_replica_urls takes postgresql://host[:port]/db URLs: {parts.hostname!r}")
            host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
            port = f":{parts.port}" if parts.port else ""
            addresses.append(urlunsplit((parts.scheme, f"{host}{port}", parts.path, parts.query, "")))
        return addresses

    @field_validator("db_backends")
    @classmethod
    def _known_services(cls, value: dict[str, DatabaseBackend]) -> dict[str, DatabaseBackend]:
        known = [spec.name for spec in schema_owners()]
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"unknown service(s) {unknown} in db_backends; known: {known}")
        return value

    @field_validator("min_replicas", "max_replicas")
    @classmethod
    def _known_apps(cls, value: dict[str, int], info: ValidationInfo) -> dict[str, int]:
        unknown = sorted(set(value) - set(app_names()))
        if unknown:
            raise ValueError(f"unknown app(s) {unknown} in {info.field_name}; known: {list(app_names())}")
        out_of_range = {app: n for app, n in value.items() if not 1 <= n <= 64}
        if out_of_range:
            raise ValueError(f"{info.field_name} must be between 1 and 64: {out_of_range}")
        return value

    @field_validator(
        "rate_limit_auth",
        "rate_limit_refresh",
        "rate_limit_read",
        "rate_limit_write",
        "refresh_rate_per_family",
        "refresh_rate_per_account",
    )
    @classmethod
    def _rate_limit_form(cls, value: str, info: ValidationInfo) -> str:
        _parse_rate_limit(value, str(info.field_name))
        return value

    @field_validator("rate_limit_exempt", "readyz_detail_networks")
    @classmethod
    def _networks(cls, value: str, info: ValidationInfo) -> str:
        _parse_networks(value, str(info.field_name))
        return value

    @model_validator(mode="after")
    def _tls_files_in_pairs(self) -> Settings:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("set both tls_certfile and tls_keyfile, or neither (then a local CA issues them)")
        return self

    @model_validator(mode="after")
    def _kafka_credentials_in_pairs(self) -> Settings:
        if (self.kafka_username is None) != (self.kafka_password is None):
            raise ValueError("set both kafka_username and kafka_password, or neither")
        return self

    @model_validator(mode="after")
    def _budget_covers_actors(self) -> Settings:
        if self.db_pool_actor_connections < self.db_pool_actors:
            raise ValueError(
                f"db_pool_actor_connections={self.db_pool_actor_connections} is smaller than"
                f" db_pool_actors={self.db_pool_actors}: every pool actor needs at least one connection"
            )
        return self

    def model_post_init(self, context: object, /) -> None:
        if self.credentials_file is not None and self.secret_key is None:
            try:
                held = json.loads(self.credentials_file.read_text())
            except (OSError, ValueError) as exc:
                raise SecretNotHeld(f"cannot read credentials_file {self.credentials_file}: {exc}") from exc
            self._held = {str(label): bytes.fromhex(value) for label, value in held.items()}

    def secret(self, label: str) -> bytes:
        """The secret derived for ``label`` (:mod:`strata.schemas._secrets`): from the master secret when this
        process holds it (the `strata` command), else from its ``credentials_file``; :class:`SecretNotHeld` when
        it was not given that one (each component holds its own secrets only)."""
        if self.secret_key is not None and self.secret_key.get_secret_value():
            return derive_secret(self.secret_key.get_secret_value(), label)
        if label in self._held:
            return self._held[label]
        raise SecretNotHeld(
            f"this process holds no secret {label!r}: each component gets only its own derived secrets, and only"
            " the strata command the master secret (STRATA_SECRET_KEY)"
        )

    @classmethod
    def of_service(cls, service: str) -> Settings:
        """The settings of an actor working for ``service`` (a pool, a consumer): made by one of its replicas, it
        inherits their credentials (``STRATA_CREDENTIALS_FILE``); made by a driver (a script, a test), which hands
        a worker none, it reads its service's own file, which `strata up` wrote under the data dir."""
        settings = cls()
        if settings.holds_secret(postgres_role_secret(service)):
            return settings
        return cls(credentials_file=credentials_file_of(settings.data_dir, service))

    def holds_secret(self, label: str) -> bool:
        """Whether :meth:`secret` answers ``label`` in this process."""
        return bool(self.secret_key is not None and self.secret_key.get_secret_value()) or label in self._held

    @property
    def embedded_postgres(self) -> bool:
        return self.database_url is None or not self.database_url.get_secret_value()

    @property
    def embedded_kafka(self) -> bool:
        return not self.kafka_bootstrap_servers

    @property
    def local_ray(self) -> bool:
        return not self.ray_address

    def derived_key(self, purpose: str) -> bytes:
        """A 32-byte key for ``purpose`` (e.g. ``"data-cursor"``), derived from the master secret: the label
        ``key:<purpose>``, which a component holds when its registry spec names it."""
        return self.secret(key_secret(purpose))

    def consistency_token_key(self) -> bytes:
        """The key the gateway signs and verifies ``Strata-Consistency`` tokens with (derived from the master secret,
        for this purpose alone): only the gateway needs it; a service trusts the positions its callers pass."""
        return self.secret(CONSISTENCY_TOKEN_KEY)

    def edge_token(self) -> str:
        """The token strata's TLS front adds to every request it forwards (``X-Strata-Edge``), derived from the
        master secret: the gateway trusts the front's ``X-Forwarded-For`` only when it carries this."""
        return self.secret(EDGE_TOKEN).hex()

    @property
    def rate_limit_exempt_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """``rate_limit_exempt``, parsed."""
        return _parse_networks(self.rate_limit_exempt)

    @property
    def readyz_detail_network_list(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """``readyz_detail_networks``, parsed."""
        return _parse_networks(self.readyz_detail_networks, "readyz_detail_networks")

    def rate_limit(self, limit_class: RateLimitClass) -> tuple[int, float]:
        """``(quota, window seconds)`` of a rate-limit class (``auth``, ``refresh``, ``read``, ``write``)."""
        return _parse_rate_limit(getattr(self, f"rate_limit_{limit_class}"), f"rate_limit_{limit_class}")

    def refresh_rate(self, scope: Literal["family", "account"]) -> tuple[int, float]:
        """``refresh_rate_per_<scope>`` as ``(quota, window seconds)``."""
        return _parse_rate_limit(getattr(self, f"refresh_rate_per_{scope}"), f"refresh_rate_per_{scope}")

    def db_backend(self, service: str) -> DatabaseBackend:
        """The database backend ``service`` uses (its registry default unless configured)."""
        return self.db_backends.get(service, service_spec(service).db_backend)
