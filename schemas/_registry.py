"""The one list of strata's components: what each is, owns, publishes and consumes.

Everything that needs to know "which services are there" reads :data:`REGISTRY`:
settings validation (``STRATA_DB_BACKENDS``, ``STRATA_MIN_REPLICAS``), the
gateway's ``/readyz``, ``strata status``, migrations (the shared outbox and inbox
tables included), the catalogue of permissions, topic and dead-letter
topic creation, consumer startup in the replicas, and the checks of
``cluster/serve.yaml`` and of the package data. Adding a component is one
:class:`ServiceSpec` here plus its package under ``serve_apps/``, and its place
in the gateway, which names its services in code (its ``App`` literal, clients,
routers and OpenAPI tags: ``tests/unit/test_gateway_lists.py`` checks them
against this list); see ``docs/components.md``.

The registry is data only: handlers are named by import path (``module:function``)
and resolved where they run, so importing it costs nothing and pulls in neither
Ray nor a service's code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from strata.schemas._secrets import (
    CONSISTENCY_TOKEN_KEY,
    EDGE_TOKEN,
    REFRESH_CHILD,
    SIGNING_KEY_ENCRYPTION,
    kafka_principal_secret,
    key_secret,
    postgres_role_secret,
)
from strata.schemas.events import topic_name, topics

DatabaseBackend = Literal["replica", "actors"]


@dataclass(frozen=True, slots=True)
class ConsumerGroupSpec:
    """A Kafka consumer group a component runs: its topics and the effect applied once per event."""

    group: str
    topics: tuple[str, ...]
    handler: str
    """``module:function`` of ``async def handler(conn, event)``, run in the component's transaction."""
    members: int = 1
    """Runner actors of the group (each reads a share of the partitions)."""


@dataclass(frozen=True, slots=True)
class PermissionSpec:
    """A permission a component's routes require (``<resource>:<action>``), as the catalogue describes it.

    Which roles hold it is not the component's to say: roles and their grants are the users service's
    (:data:`PERMISSIONS_OWNER`), in its migrations.
    """

    name: str
    description: str


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One component of strata: a Serve application and what it owns.

    ``name`` is the Serve application's name and, for a component with a database, its PostgreSQL schema and
    role (``strata_<name>``). ``deployment`` is the deployment that serves its calls (or HTTP, for the gateway).
    """

    name: str
    deployment: str
    package: str
    """The Python package whose ``app`` is the Serve application and whose ``migrations/`` hold its schema."""
    description: str
    route_prefix: str | None = None
    """HTTP route prefix; only the gateway has one, services are reached by handle."""
    owns_schema: bool = True
    outbox: bool = False
    """Records events in an outbox table of its schema; relay actors publish them."""
    publishes: tuple[str, ...] = ()
    """Topics its outbox publishes on (each event type's topic names its service)."""
    consumer_groups: tuple[ConsumerGroupSpec, ...] = field(default=())
    reads: tuple[str, ...] = ()
    """Topics it reads without a consumer group (the gateway's revocation feed); its Kafka ACLs allow just these."""
    db_backend: DatabaseBackend = "replica"
    """Default database backend (``STRATA_DB_BACKENDS`` overrides it per service)."""
    migration_settings: tuple[str, ...] = ()
    """Settings its migrations read, each as the PostgreSQL setting ``strata.<name>`` (``current_setting()``)."""
    replica_reads: bool = False
    """Runs its read-only units of work on standbys when there are any (``Database.read``)."""
    workers: tuple[str, ...] = ()
    """Further deployments of its Serve application, reached by handle like ``deployment`` (the data service's
    CPU-bound ``DataProcessing``): same database role, their own replicas and scaling."""
    permissions: tuple[PermissionSpec, ...] = ()
    """Permissions its routes require; ``strata migrate`` seeds them into the catalogue of :data:`PERMISSIONS_OWNER`."""
    secrets: tuple[str, ...] = ()
    """Derived secrets its processes hold besides its database role's and Kafka principal's passwords, by label
    (:mod:`strata.schemas._secrets`; ``key_secret(purpose)`` for a key of :meth:`Settings.derived_key`)."""

    @property
    def import_path(self) -> str:
        """The Serve application as ``serve.yaml`` names it."""
        return f"{self.package}:app"

    @property
    def entry_deployment(self) -> str | None:
        """The ingress deployment of a service app reached by handle (``<Deployment>Entry``); ``None`` for HTTP."""
        return None if self.route_prefix is not None else f"{self.deployment}Entry"

    @property
    def deployments(self) -> tuple[str, ...]:
        """Every deployment of its Serve application."""
        entry = self.entry_deployment
        return (self.deployment, *self.workers) if entry is None else (self.deployment, *self.workers, entry)


def _topics_of(service: str) -> tuple[str, ...]:
    return tuple(t for t in topics() if t.startswith(f"strata.{service}."))


AUTH_ACCOUNT_TOPIC = topic_name("auth", "account")
USERS_USER_TOPIC = topic_name("users", "user")
DATA_COLLECTION_TOPIC = topic_name("data", "collection")

REGISTRY: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        name="gateway",
        deployment="Gateway",
        package="strata.serve_apps.gateway",
        description="the only HTTP application: TLS-fronted, verifies tokens, rate-limits, routes one hop down",
        route_prefix="/",
        owns_schema=False,
        reads=(AUTH_ACCOUNT_TOPIC, USERS_USER_TOPIC),
        permissions=(PermissionSpec("ops:read", "Reads operational details (the gateway's /readyz report)."),),
        secrets=(EDGE_TOKEN, CONSISTENCY_TOKEN_KEY),
    ),
    ServiceSpec(
        name="auth",
        deployment="AuthService",
        package="strata.serve_apps.auth",
        description="credentials, sessions (refresh-token families), signing keys and their JWKS",
        outbox=True,
        publishes=_topics_of("auth"),
        consumer_groups=(ConsumerGroupSpec("auth", (USERS_USER_TOPIC,), "strata.serve_apps.auth:apply_users_event"),),
        secrets=(SIGNING_KEY_ENCRYPTION, REFRESH_CHILD),
    ),
    ServiceSpec(
        name="users",
        deployment="UsersService",
        package="strata.serve_apps.users",
        description="profiles, roles and their permissions",
        outbox=True,
        publishes=_topics_of("users"),
        consumer_groups=(
            ConsumerGroupSpec("users", (AUTH_ACCOUNT_TOPIC,), "strata.serve_apps.users:apply_auth_event"),
        ),
        replica_reads=True,
        permissions=(
            PermissionSpec("profile:read", "Reads one's own profile."),
            PermissionSpec("profile:write", "Changes one's own profile."),
            PermissionSpec("users:read", "Lists and reads every user's profile."),
            PermissionSpec("users:write", "Changes other users: their roles, disables, enables and deletes them."),
        ),
    ),
    ServiceSpec(
        name="data",
        deployment="DataService",
        package="strata.serve_apps.data",
        description="collections, their members and their items (hash-partitioned), and their events",
        outbox=True,
        publishes=_topics_of("data"),
        consumer_groups=(ConsumerGroupSpec("data", (USERS_USER_TOPIC,), "strata.serve_apps.data:apply_users_event"),),
        migration_settings=("data_item_partitions",),
        replica_reads=True,
        reads=(DATA_COLLECTION_TOPIC,),  # DataProcessing's replicas follow it to drop cached statistics
        workers=("DataProcessing",),
        permissions=(
            PermissionSpec("data:read", "Reads the collections one owns or is a member of, and their items."),
            PermissionSpec("data:write", "Creates collections and writes those one owns or edits."),
            PermissionSpec("data:admin", "Reads every collection (read only)."),
        ),
        secrets=(key_secret("data-cursor"),),
    ),
    ServiceSpec(
        name="audit",
        deployment="AuditService",
        package="strata.serve_apps.audit",
        description="the audit log: one row per domain event, read by administrators",
        consumer_groups=(ConsumerGroupSpec("audit", tuple(topics()), "strata.serve_apps.audit:record_audit_event"),),
        replica_reads=True,
        permissions=(PermissionSpec("audit:read", "Reads the audit log."),),
    ),
)
"""Every component, in start order (the gateway first: it is the application the others are reached through)."""

_BY_NAME = {spec.name: spec for spec in REGISTRY}

PERMISSIONS_OWNER = "users"
"""The component owning roles, their grants and the catalogue (``<schema>.permissions``) of every spec's
permissions."""


def service_spec(name: str) -> ServiceSpec:
    """The spec of component ``name``; an unknown name is a ``ValueError`` listing the known ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown component {name!r}; known: {sorted(_BY_NAME)}") from None


def app_names() -> tuple[str, ...]:
    """Every Serve application strata deploys."""
    return tuple(spec.name for spec in REGISTRY)


def schema_owners() -> tuple[ServiceSpec, ...]:
    """Components owning a PostgreSQL schema and role (migrations, database backends, passwords)."""
    return tuple(spec for spec in REGISTRY if spec.owns_schema)


def outbox_owners() -> tuple[ServiceSpec, ...]:
    """Components with an outbox and relay actors."""
    return tuple(spec for spec in REGISTRY if spec.outbox)


def consumer_groups() -> tuple[tuple[ServiceSpec, ConsumerGroupSpec], ...]:
    """Every consumer group strata runs, with the component running it."""
    return tuple((spec, group) for spec in REGISTRY for group in spec.consumer_groups)


def component_secrets(name: str) -> tuple[str, ...]:
    """The labels of every derived secret component ``name``'s processes hold: its Kafka principal's password, its
    database role's (when it owns a schema) and its spec's ``secrets``. Nothing else reaches them."""
    spec = service_spec(name)
    own = (kafka_principal_secret(name), *((postgres_role_secret(name),) if spec.owns_schema else ()))
    return (*own, *spec.secrets)


def defined_permissions() -> tuple[tuple[ServiceSpec, PermissionSpec], ...]:
    """Every permission a component defines, with the component, in registry order."""
    return tuple((spec, permission) for spec in REGISTRY for permission in spec.permissions)
