"""Per-service SQL migrations, applied in order under an advisory lock.

A service keeps its migrations beside its code, as ``migrations/NNNN_what.sql``.
Each file runs in its own transaction as the service's role (so what it creates
belongs to that role and lives in its schema) and is recorded with its SHA-256
in ``<service>.schema_migrations``. Applying again is a no-op; a file edited
after it was applied is refused, since the database no longer matches it.

Tables every component of a kind has (the outbox, the inbox) are not copied into
each service's folder: they are *plumbing* (:mod:`~strata.actors.postgres._plumbing`),
one definition applied to each schema that needs it before the service's own files
and recorded by name in ``<service>.schema_plumbing``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    conn: asyncpg.Connection,
    service: str,
    migrations: list[Migration],
    params: Mapping[str, str] | None = None,
    *,
    plumbing: Sequence[Migration] = (),
    superseded: Mapping[str, str] | None = None,
) -> list[str]:
    """Apply what is pending of ``plumbing``, then of ``migrations``, to ``service``'s schema; return the names applied.

    ``plumbing`` are the shared steps the registry gives the service (named ``<kind>/NNNN_what.sql``), recorded by
    name in ``schema_plumbing``; they run first, so a service's files may rely on its outbox and inbox.
    ``superseded`` maps the file names of service migrations that once carried plumbing DDL to the checksum databases
    recorded for them: once the plumbing is recorded, such a record is dropped if its file is gone, or takes the
    checksum of the file as it ships now (without that DDL). Only those exact checksums are accepted, so any other
    edit of an applied file is still refused.

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
            if plumbing:
                applied_now += await _apply_plumbing(conn, service, role, plumbing, set_role, set_path)
            applied = {r["version"]: dict(r) for r in await conn.fetch(select_applied)}
            if plumbing and superseded:
                await _settle_superseded(conn, service, applied, migrations, superseded)
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
                async with _applying(conn, service, migration, set_role, set_path):
                    for name, value in (params or {}).items():
                        await conn.execute("SELECT set_config($1, $2, true)", f"strata.{name}", value)
                    await conn.execute(migration.sql)
                    await conn.execute(insert_applied, migration.version, migration.name, migration.checksum)
                logger.info("applied migration %s to schema %s", migration.name, service)
                applied_now.append(migration.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _lock_key(service))
    return applied_now


@contextlib.asynccontextmanager
async def _applying(
    conn: asyncpg.Connection, service: str, migration: Migration, set_role: str, set_path: str
) -> AsyncIterator[None]:
    """One transaction, as the service's role in its schema, for one step; a server error rolls it back and is
    reported as a :class:`MigrationError` naming the step."""
    try:
        async with conn.transaction():
            await conn.execute(set_role)
            await conn.execute(set_path)
            yield
    except asyncpg.exceptions.PostgresError as exc:
        raise MigrationError(
            f"migration {migration.name} of service {service!r} failed and was rolled back:"
            f" {type(exc).__name__}: {exc}",
            sqlstate=getattr(exc, "sqlstate", None),
        ) from exc


async def _apply_plumbing(
    conn: asyncpg.Connection, service: str, role: str, plumbing: Sequence[Migration], set_role: str, set_path: str
) -> list[str]:
    """Apply the pending shared steps, each in its own transaction, recorded by name in ``schema_plumbing``."""
    await conn.execute(
        await conn.fetchval(
            "SELECT format('CREATE TABLE IF NOT EXISTS %I.schema_plumbing ("
            " name text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())',"
            " $1::text)",
            service,
        )
    )
    await conn.execute(
        await conn.fetchval(
            "SELECT format('ALTER TABLE %I.schema_plumbing OWNER TO %I', $1::text, $2::text)", service, role
        )
    )
    select_applied = await conn.fetchval(
        "SELECT format('SELECT name, checksum FROM %I.schema_plumbing', $1::text)", service
    )
    insert_applied = await conn.fetchval(
        "SELECT format('INSERT INTO %I.schema_plumbing (name, checksum) VALUES ($1, $2)', $1::text)", service
    )
    applied = {r["name"]: r["checksum"] for r in await conn.fetch(select_applied)}
    applied_now: list[str] = []
    for step in plumbing:
        done = applied.get(step.name)
        if done is not None:
            if done != step.checksum:
                raise MigrationError(
                    f"shared migration {step.name} of service {service!r} was edited after it was applied"
                    f" (recorded checksum {done[:12]}..., now {step.checksum[:12]}...);"
                    " add a new step instead of changing an applied one"
                )
            continue
        async with _applying(conn, service, step, set_role, set_path):
            await conn.execute(step.sql)
            await conn.execute(insert_applied, step.name, step.checksum)
        logger.info("applied shared migration %s to schema %s", step.name, service)
        applied_now.append(step.name)
    return applied_now


async def _settle_superseded(
    conn: asyncpg.Connection,
    service: str,
    applied: dict[int, dict[str, Any]],
    migrations: list[Migration],
    superseded: Mapping[str, str],
) -> None:
    """Bring the records of files whose plumbing DDL moved out to what a fresh database records (``applied`` too).

    Runs once the plumbing is recorded: the tables those files created are the plumbing's now. A record of a file
    that is gone is deleted; a record of a file that ships without that DDL now takes its new checksum. One
    transaction, so a database never records half of the move.
    """
    shipped = {m.version: m for m in migrations}
    delete = await conn.fetchval(
        "SELECT format('DELETE FROM %I.schema_migrations WHERE version = $1 AND checksum = $2', $1::text)", service
    )
    update = await conn.fetchval(
        "SELECT format('UPDATE %I.schema_migrations SET checksum = $3 WHERE version = $1 AND checksum = $2', $1::text)",
        service,
    )
    async with conn.transaction():
        for version, record in list(applied.items()):
            name, checksum = str(record["name"]), str(record["checksum"])
            if superseded.get(name) != checksum:
                continue
            now = shipped.get(version)
            if now is None:
                await conn.execute(delete, version, checksum)
                del applied[version]
            elif now.name == name:
                await conn.execute(update, version, checksum, now.checksum)
                record["checksum"] = now.checksum
            else:
                raise MigrationError(
                    f"migration {now.name} of service {service!r} took version {version:04d} of {name},"
                    " whose DDL moved into the shared plumbing: give it a version of its own"
                )
            logger.info("settled the record of %s of schema %s (its plumbing DDL is shared now)", name, service)
