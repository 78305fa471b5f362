"""PostgreSQL access for strata's services: one ``Database`` interface, two backends, typed errors, migrations."""

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
    service_dsn,
    service_password,
    service_role,
    strip_password,
)

__all__ = [
    "NAMESPACE",
    "AsyncpgPool",
    "CommandTimedOut",
    "Database",
    "DatabaseError",
    "DatabaseUnavailable",
    "InsufficientPrivilege",
    "IntegrityError",
    "Migration",
    "MigrationError",
    "NotFound",
    "PoolActorDatabase",
    "PoolState",
    "PostgresPoolActor",
    "QueryError",
    "ReplicaPoolDatabase",
    "Row",
    "SerializationFailure",
    "TransactionFn",
    "UniqueViolation",
    "admin_dsn",
    "apply_migrations",
    "check_service_name",
    "ensure_service_role",
    "get_or_create_pool_actor",
    "load_migrations",
    "map_asyncpg_errors",
    "open_database",
    "pool_actor_name",
    "pool_size_for",
    "redact_dsn",
    "service_dsn",
    "service_migrations_dir",
    "service_password",
    "service_role",
    "strip_password",
]
