"""A database migrated before the shared plumbing (and the registry's permissions) migrates forward without loss.

Two databases on the unit PostgreSQL: one migrated with the services' files as they shipped then
(``tests/fixtures/migrations_0/``), given rows, then migrated by today's ``migrate_async``; one migrated fresh by
it. Nothing is lost, and the two end with the same catalogue: columns, constraints, indexes, owners, grants and the
migrations' bookkeeping.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from strata.actors.postgres import (
    MigrationError,
    apply_migrations,
    ensure_service_role,
    load_migrations,
    service_password,
)
from strata.cluster import migrate_async
from strata.schemas import defined_permissions, schema_owners
from tests.unit.conftest import UnitPostgres

FIXTURES_0 = Path(__file__).parents[1] / "fixtures" / "migrations_0"
SCHEMAS = [spec.name for spec in schema_owners()]
OWN_GRANT = ("viewer", "ops:read")
"""A grant the database of before was given by hand: it stays, and is the one difference from a fresh database."""

CATALOGUE = {
    "columns": """
        SELECT table_schema, table_name, column_name, ordinal_position, data_type, is_nullable, column_default,
               is_identity, identity_generation
        FROM information_schema.columns WHERE table_schema = ANY($1::text[])""",
    "constraints": """
        SELECT n.nspname, c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)
        FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = ANY($1::text[])""",
    "indexes": "SELECT schemaname, tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = ANY($1::text[])",
    "relations": """
        SELECT n.nspname, c.relname, c.relkind, pg_get_userbyid(c.relowner), c.relacl::text
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY($1::text[])""",
    "grants": """
        SELECT grantor, grantee, table_schema, table_name, privilege_type
        FROM information_schema.table_privileges WHERE table_schema = ANY($1::text[])""",
}


def _dsn_of(admin_dsn: str, database: str) -> str:
    parts = urlsplit(admin_dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


@pytest.fixture
async def databases(unit_postgres: UnitPostgres) -> AsyncIterator[tuple[str, str]]:
    """Two empty databases on the unit PostgreSQL: (migrated before, fresh), as admin DSNs."""
    names = [f"upgrade_{uuid.uuid4().hex[:8]}", f"fresh_{uuid.uuid4().hex[:8]}"]
    admin = await asyncpg.connect(unit_postgres.admin_dsn)
    try:
        for name in names:
            await admin.execute(await admin.fetchval("SELECT format('CREATE DATABASE %I', $1::text)", name))
        yield _dsn_of(unit_postgres.admin_dsn, names[0]), _dsn_of(unit_postgres.admin_dsn, names[1])
    finally:
        for name in names:
            await admin.execute(
                await admin.fetchval("SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', $1::text)", name)
            )
        await admin.close()


async def _migrate_as_before(dsn: str, secret_key: str) -> None:
    """What ``strata migrate`` did before: each service's files of then, in order, no plumbing."""
    conn = await asyncpg.connect(dsn)
    try:
        for service in SCHEMAS:
            await ensure_service_role(conn, service, service_password(secret_key, service))
            await apply_migrations(conn, service, load_migrations(FIXTURES_0 / service))
    finally:
        await conn.close()


async def _catalogue(conn: asyncpg.Connection) -> dict[str, list[tuple[object, ...]]]:
    found = {key: sorted(tuple(r) for r in await conn.fetch(query, SCHEMAS)) for key, query in CATALOGUE.items()}
    for schema in SCHEMAS:
        found[f"{schema}.schema_migrations"] = [
            tuple(r)
            for r in await conn.fetch(
                f"SELECT version, name, checksum FROM {schema}.schema_migrations ORDER BY version"
            )
        ]
        found[f"{schema}.schema_plumbing"] = [
            tuple(r) for r in await conn.fetch(f"SELECT name, checksum FROM {schema}.schema_plumbing ORDER BY name")
        ]
    found["users.permissions"] = [tuple(r) for r in await conn.fetch("SELECT * FROM users.permissions ORDER BY 1")]
    found["users.role_permissions"] = [
        tuple(r)
        for r in await conn.fetch("SELECT * FROM users.role_permissions ORDER BY 1, 2")
        if tuple(r) != OWN_GRANT
    ]
    return found


async def test_a_database_of_before_migrates_forward_without_loss_and_ends_as_a_fresh_one(
    unit_postgres: UnitPostgres, databases: tuple[str, str]
) -> None:
    before, fresh = databases
    await _migrate_as_before(before, unit_postgres.secret_key)
    conn = await asyncpg.connect(before)
    try:
        outbox = {service: uuid.uuid4() for service in ("auth", "users", "data")}
        for service, event_id in outbox.items():
            await conn.execute(
                f"INSERT INTO {service}.outbox (id, topic, key, key_hash, payload) VALUES ($1, 't', 'k', 7, 'x')",
                event_id,
            )
        inbox = {service: uuid.uuid4() for service in ("auth", "users", "data", "audit")}
        for service, event_id in inbox.items():
            await conn.execute(
                f"INSERT INTO {service}.inbox (consumer_group, event_id) VALUES ($1, $2)", service, event_id
            )
        await conn.execute("INSERT INTO users.role_permissions (role, permission) VALUES ($1, $2)", *OWN_GRANT)
        grants_before = sorted(
            tuple(r) for r in await conn.fetch("SELECT role, permission FROM users.role_permissions")
        )
    finally:
        await conn.close()

    applied = await migrate_async(unit_postgres.settings(database_url=before))
    assert sorted(applied["users"]) == ["0006_permissions.sql", "inbox/0001_inbox.sql", "outbox/0001_outbox.sql"]
    assert applied["audit"] == ["inbox/0001_inbox.sql"]
    await migrate_async(unit_postgres.settings(database_url=fresh))

    old, new = await asyncpg.connect(before), await asyncpg.connect(fresh)
    try:
        for service, event_id in outbox.items():
            assert await old.fetchval(f"SELECT topic FROM {service}.outbox WHERE id = $1", event_id) == "t"
        for service, event_id in inbox.items():
            assert (
                await old.fetchval(f"SELECT consumer_group FROM {service}.inbox WHERE event_id = $1", event_id)
                == service
            )
        grants_after = await old.fetch("SELECT role, permission FROM users.role_permissions")
        assert {tuple(r) for r in grants_before} <= {tuple(r) for r in grants_after}
        migrated, created = await _catalogue(old), await _catalogue(new)
        assert migrated["columns"], "the catalogue query found nothing: the comparison would pass vacuously"
        for key in created:
            assert migrated[key] == created[key], key
        catalogue = {tuple(r) for r in await new.fetch("SELECT name, component, description FROM users.permissions")}
        assert catalogue == {(p.name, spec.name, p.description) for spec, p in defined_permissions()}
        ungranted = await new.fetch(
            "SELECT permission FROM users.role_permissions EXCEPT SELECT name FROM users.permissions"
        )
        assert ungranted == [], "a grant names a permission no component defines"
        # A second run changes nothing on either.
        assert await migrate_async(unit_postgres.settings(database_url=before)) == {s: [] for s in SCHEMAS}
    finally:
        await old.close()
        await new.close()


async def test_only_the_recorded_checksums_of_before_are_settled(
    unit_postgres: UnitPostgres, databases: tuple[str, str]
) -> None:
    # A file of before that was edited locally (its record matches neither then nor now) is still refused, and
    # its record kept: the runner settles the exact files it knows, nothing else.
    before, _ = databases
    await _migrate_as_before(before, unit_postgres.secret_key)
    conn = await asyncpg.connect(before)
    try:
        await conn.execute("UPDATE users.schema_migrations SET checksum = 'edited' WHERE name = '0002_profiles.sql'")
        with pytest.raises(MigrationError, match=r"0002_profiles\.sql .* was edited after it was applied"):
            await migrate_async(unit_postgres.settings(database_url=before))
        assert await conn.fetchval("SELECT count(*) FROM users.schema_migrations WHERE checksum = 'edited'") == 1
    finally:
        await conn.close()
