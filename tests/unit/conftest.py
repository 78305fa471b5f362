"""A real PostgreSQL for unit tests of services' units of work: no Ray, no Kafka.

Started once per session, and only when a test asks for it, by strata's own code (``EmbeddedPostgres``, the
roles and migrations of ``strata.actors.postgres``), on a free loopback port; stopped and deleted at the end.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from strata.actors.postgres import (
    Database,
    ensure_service_role,
    migrate_component,
    open_database,
    service_password,
)
from strata.cluster._postgres import EmbeddedPostgres
from strata.cluster._state import free_port
from strata.schemas import Settings, service_spec


@dataclass(frozen=True)
class UnitPostgres:
    """The session's PostgreSQL: its admin DSN and the settings a service needs to reach it as its own role."""

    admin_dsn: str
    secret_key: str

    def settings(self, **overrides: object) -> Settings:
        """Settings pointing at this server (nothing read from a ``.env`` file), with ``overrides``."""
        values: dict[str, object] = {"database_url": self.admin_dsn, "secret_key": self.secret_key, **overrides}
        return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
async def unit_postgres() -> AsyncIterator[UnitPostgres]:
    # Not under pytest's own temp dir: that one is private to root (0700), and the embedded PostgreSQL runs
    # as an unprivileged user when the suite runs as root.
    home = Path(tempfile.mkdtemp(prefix="strata-unit-pg-"))
    server = EmbeddedPostgres(home, port=free_port(), admin_password=secrets.token_urlsafe(24))
    try:
        await asyncio.to_thread(server.init)
        await asyncio.to_thread(server.start)
        await server.ensure_database()
        yield UnitPostgres(admin_dsn=server.dsn, secret_key=secrets.token_urlsafe(32))
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
async def auth_database(unit_postgres: UnitPostgres) -> AsyncIterator[Database]:
    """The auth schema, migrated, reached as the auth service's own role through the in-replica pool."""
    conn = await asyncpg.connect(unit_postgres.admin_dsn, timeout=10)
    try:
        await ensure_service_role(conn, "auth", service_password(unit_postgres.secret_key, "auth"))
        await migrate_component(conn, service_spec("auth"))
    finally:
        await conn.close()
    database = await open_database(unit_postgres.settings(), "auth")
    try:
        yield database
    finally:
        await database.aclose()
