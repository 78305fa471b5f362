"""Migrations and least privilege against the session's real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from strata.actors.postgres import (
    InsufficientPrivilege,
    MigrationError,
    apply_migrations,
    ensure_service_role,
    load_migrations,
    map_asyncpg_errors,
    service_dsn,
    service_migrations_dir,
    service_password,
)
from tests.conftest import System

pytestmark = pytest.mark.integration


@pytest.fixture
async def admin(system: System) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(system.admin_dsn)
    yield conn
    await conn.close()


@pytest.fixture
async def service(system: System, admin: asyncpg.Connection) -> str:
    """A fresh service (role and schema) for one test."""
    name = f"mig_{uuid.uuid4().hex[:8]}"
    assert system.runtime.settings.secret_key is not None
    await ensure_service_role(
        admin, name, service_password(system.runtime.settings.secret_key.get_secret_value(), name)
    )
    return name


def _write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


FILES = {
    "0001_create_events.sql": "CREATE TABLE events (id serial PRIMARY KEY, note text NOT NULL);",
    "0002_seed.sql": "INSERT INTO events (note) VALUES ('seeded by 0002');",
}


async def test_applying_twice_is_a_no_op(admin: asyncpg.Connection, service: str, tmp_path: Path) -> None:
    migrations = load_migrations(_write(tmp_path, FILES))
    assert await apply_migrations(admin, service, migrations) == ["0001_create_events.sql", "0002_seed.sql"]
    assert await apply_migrations(admin, service, migrations) == []
    assert await admin.fetchval(f"SELECT count(*) FROM {service}.events") == 1
    owner = await admin.fetchval(
        "SELECT tableowner FROM pg_tables WHERE schemaname = $1 AND tablename = 'events'", service
    )
    assert owner == f"strata_{service}"


async def test_two_concurrent_runs_apply_each_file_once(system: System, service: str, tmp_path: Path) -> None:
    migrations = load_migrations(_write(tmp_path, FILES))
    first, second = await asyncpg.connect(system.admin_dsn), await asyncpg.connect(system.admin_dsn)
    try:
        results = await asyncio.gather(
            apply_migrations(first, service, migrations), apply_migrations(second, service, migrations)
        )
        assert sorted(results, key=len) == [[], ["0001_create_events.sql", "0002_seed.sql"]]
        assert await first.fetchval(f"SELECT count(*) FROM {service}.events") == 1
        assert await first.fetchval(f"SELECT count(*) FROM {service}.schema_migrations") == 2
    finally:
        await first.close()
        await second.close()


async def test_an_edited_applied_file_is_refused(admin: asyncpg.Connection, service: str, tmp_path: Path) -> None:
    directory = _write(tmp_path, FILES)
    await apply_migrations(admin, service, load_migrations(directory))
    (directory / "0002_seed.sql").write_text("INSERT INTO events (note) VALUES ('edited');")
    with pytest.raises(MigrationError, match=r"0002_seed\.sql .* was edited after it was applied"):
        await apply_migrations(admin, service, load_migrations(directory))
    assert await admin.fetchval(f"SELECT count(*) FROM {service}.events") == 1


async def test_a_failing_migration_rolls_back_and_is_not_recorded(
    admin: asyncpg.Connection, service: str, tmp_path: Path
) -> None:
    directory = _write(
        tmp_path, {"0001_ok.sql": "CREATE TABLE a (id int);", "0002_bad.sql": "CREATE TABLE b (id nope);"}
    )
    with pytest.raises(MigrationError, match=r"0002_bad\.sql"):
        await apply_migrations(admin, service, load_migrations(directory))
    versions = await admin.fetch(f"SELECT version FROM {service}.schema_migrations")
    assert [r["version"] for r in versions] == [1]


async def test_a_service_role_cannot_read_another_services_schema(system: System) -> None:
    users = await asyncpg.connect(service_dsn(system.runtime.settings, "users"))
    try:
        shipped = load_migrations(service_migrations_dir("users"))
        assert shipped
        assert await users.fetchval("SELECT count(*) FROM users.schema_migrations") == len(shipped)
        with pytest.raises(InsufficientPrivilege), map_asyncpg_errors():
            await users.fetch("SELECT * FROM data.schema_migrations")
        with pytest.raises(InsufficientPrivilege), map_asyncpg_errors():
            await users.execute("CREATE TABLE public.sneaky (id int)")
    finally:
        await users.close()
