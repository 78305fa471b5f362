"""PostgreSQL access for strata's services: one ``Database`` interface, two backends, typed errors, migrations."""

from strata.actors._consistency import (
    InvalidPosition,
    ReadScope,
    current_scope,
    format_lsn,
    parse_lsn,
    read_scope,
)
from strata.actors._detached import NAMESPACE
from strata.actors.postgres._database import (
    AsyncpgPool,
    Database,
    PoolState,
    ReplicaPoolDatabase,
    Row,
    TransactionFn,
    pool_size_for,
)
from strata.actors.postgres._errors import (
    CommandTimedOut,
    DatabaseError,
    DatabaseUnavailable,
    InsufficientPrivilege,
    IntegrityError,
    MigrationError,
    NotFound,
    QueryError,
    SerializationFailure,
    UniqueViolation,
    map_asyncpg_errors,
)
from strata.actors.postgres._factory import open_database
from strata.actors.postgres._migrations import Migration, apply_migrations, load_migrations, service_migrations_dir
from strata.actors.postgres._permissions import seed_permissions
from strata.actors.postgres._plumbing import SUPERSEDED, migrate_component, plumbing_kinds, plumbing_migrations
from strata.actors.postgres._pool_actor import (
    PoolActorDatabase,
    PostgresPoolActor,
    get_or_create_pool_actor,
    pool_actor_name,
)
from strata.actors.postgres._roles import (
    admin_dsn,
    check_service_name,
    ensure_service_role,
    redact_dsn,
    replica_dsn,
    service_dsn,
    service_password,
    service_role,
    strip_password,
)
from strata.actors.postgres._routing import ReplicaBounds, RoutedDatabase, Standby

__all__ = [
    "NAMESPACE",
    "SUPERSEDED",
    "AsyncpgPool",
    "CommandTimedOut",
    "Database",
    "DatabaseError",
    "DatabaseUnavailable",
    "InsufficientPrivilege",
    "IntegrityError",
    "InvalidPosition",
    "Migration",
    "MigrationError",
    "NotFound",
    "PoolActorDatabase",
    "PoolState",
    "PostgresPoolActor",
    "QueryError",
    "ReadScope",
    "ReplicaBounds",
    "ReplicaPoolDatabase",
    "RoutedDatabase",
    "Row",
    "SerializationFailure",
    "Standby",
    "TransactionFn",
    "UniqueViolation",
    "admin_dsn",
    "apply_migrations",
    "check_service_name",
    "current_scope",
    "ensure_service_role",
    "format_lsn",
    "get_or_create_pool_actor",
    "load_migrations",
    "map_asyncpg_errors",
    "migrate_component",
    "open_database",
    "parse_lsn",
    "plumbing_kinds",
    "plumbing_migrations",
    "pool_actor_name",
    "pool_size_for",
    "read_scope",
    "redact_dsn",
    "replica_dsn",
    "seed_permissions",
    "service_dsn",
    "service_migrations_dir",
    "service_password",
    "service_role",
    "strip_password",
]
