"""Per-service SQL migrations, applied in order under an advisory lock.

A service keeps its migrations beside its code, as ``migrations/NNNN_what.sql``.
Each file runs in its own transaction as the service's role (so what it creates
belongs to that role and lives in its schema) and is recorded with its SHA-256
in ``<service>.schema_migrations``. Applying again is a no-op; a file edited
after it was applied is refused, since the database no longer matches it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from strata.actors.postgres._errors import MigrationError, map_asyncpg_errors
from strata.actors.postgres._roles import check_service_name, service_role
from strata.schemas import service_spec

logger = logging.getLogger(__name__)

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path) -> list[Migration]:
    """The migrations in ``directory``, in version order; bad names and duplicate versions are errors."""
    if not directory.is_dir():
        return []
    found: dict[int, Migration] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql":
            continue
        match = _FILE.match(path.name)
        if match is None:
            raise MigrationError(f"migration file {path.name!r} must be named NNNN_lower_snake.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migrations share version {version:04d}: {found[version].name}, {path.name}")
        found[version] = Migration(version, path.name, path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def service_migrations_dir(service: str) -> Path:
    """Where the migrations of ``service`` ship: the ``migrations/`` folder of its registry package.

    Found without importing the package (which would start building its Serve application).
    """
    spec = service_spec(check_service_name(service))
    if not spec.owns_schema:
        raise ValueError(f"{service} owns no schema, so it has no migrations")
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise MigrationError(f"the package {spec.package} of {service} is not installed")
    return Path(next(iter(found.submodule_search_locations))) / "migrations"


def _lock_key(service: str) -> int:
    digest = hashlib.sha256(f"strata-migrations:{service}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def apply_migrations(
    conn: asyncpg.Connection, service: str, migrations: list[Migration], params: Mapping[str, str] | None = None
) -> list[str]:
    """Apply what is pending of ``migrations`` to ``service``'s schema; return the names applied.

    ``params`` are set for each file's transaction as PostgreSQL settings ``strata.<name>``, which its SQL reads with
    ``current_setting('strata.<name>')`` (the registry's ``migration_settings``: e.g. the data service's partition
    count). They matter only to a file applied now: an applied file never runs again.

    ``conn`` is an admin connection and the service's role and schema exist
    (:func:`~strata.actors.postgres.ensure_service_role`). Concurrent callers
    wait on a session advisory lock, so each file is applied once.
    """
    check_service_name(service)
    role = service_role(service)
    applied_now: list[str] = []
    with map_asyncpg_errors():
        await conn.execute("SELECT pg_advisory_lock($1)", _lock_key(service))
        try:
            await conn.execute(
                await conn.fetchval(
                    "SELECT format('CREATE TABLE IF NOT EXISTS %I.schema_migrations ("
                    " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())', $1::text)",
                    service,
                )
            )
            await conn.execute(
                await conn.fetchval(
                    "SELECT format('ALTER TABLE %I.schema_migrations OWNER TO %I', $1::text, $2::text)", service, role
                )
            )
            select_applied = await conn.fetchval(
                "SELECT format('SELECT version, name, checksum FROM %I.schema_migrations', $1::text)", service
            )
            insert_applied = await conn.fetchval(
                "SELECT format('INSERT INTO %I.schema_migrations (version, name, checksum)"
                " VALUES ($1, $2, $3)', $1::text)",
                service,
            )
            set_role = await conn.fetchval("SELECT format('SET LOCAL ROLE %I', $1::text)", role)
            set_path = await conn.fetchval("SELECT format('SET LOCAL search_path TO %I', $1::text)", service)
            applied = {r["version"]: r for r in await conn.fetch(select_applied)}
            for migration in migrations:
                done = applied.get(migration.version)
                if done is not None:
                    if done["checksum"] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.name} of service {service!r} was edited after it was applied"
                            f" (recorded checksum {done['checksum'][:12]}..., file {migration.checksum[:12]}...);"
                            " add a new migration instead of changing an applied one"
                        )
                    continue
                try:
                    async with conn.transaction():
                        await conn.execute(set_role)
                        await conn.execute(set_path)
                        for name, value in (params or {}).items():
                            await conn.execute("SELECT set_config($1, $2, true)", f"strata.{name}", value)
                        await conn.execute(migration.sql)
                        await conn.execute(insert_applied, migration.version, migration.name, migration.checksum)
                except asyncpg.exceptions.PostgresError as exc:
                    raise MigrationError(
                        f"migration {migration.name} of service {service!r} failed and was rolled back:"
                        f" {type(exc).__name__}: {exc}",
                        sqlstate=getattr(exc, "sqlstate", None),
                    ) from exc
                logger.info("applied migration %s to schema %s", migration.name, service)
                applied_now.append(migration.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _lock_key(service))
    return applied_now
