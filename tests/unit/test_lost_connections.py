"""A lost connection drops every pooled connection; a read is retried once, a write is not (fake asyncpg pool)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from strata.actors.postgres import DatabaseUnavailable, PoolState, ReplicaPoolDatabase


class FakeConnection:
    def __init__(self, pool: FakePool) -> None:
        self._pool = pool

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._pool.answer()

    async def execute(self, query: str, *args: Any) -> str:
        return str(await self._pool.answer())


class FakePool:
    """Fails the first ``failures`` statements as a dropped connection would, then answers 1."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.expired = 0

    async def answer(self) -> int:
        if self.failures:
            self.failures -= 1
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation")
        return 1

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[FakeConnection]:
        yield FakeConnection(self)

    async def expire_connections(self) -> None:
        self.expired += 1


def _database(pool: FakePool) -> ReplicaPoolDatabase:
    db = ReplicaPoolDatabase("postgresql://unused", max_size=1, command_timeout=1.0, application_name="test")
    db._pool = pool  # type: ignore[assignment]
    db._state = PoolState.OPEN
    return db


async def test_a_read_on_a_lost_connection_expires_the_pool_and_is_retried_once() -> None:
    pool = FakePool(failures=1)
    assert await _database(pool).fetchval("SELECT 1") == 1
    assert pool.expired == 1


async def test_a_write_on_a_lost_connection_expires_the_pool_and_is_reported() -> None:
    pool = FakePool(failures=1)
    db = _database(pool)
    with pytest.raises(DatabaseUnavailable):
        await db.execute("UPDATE t SET x = 1")
    assert pool.expired == 1
    assert await db.execute("UPDATE t SET x = 1") == "1"
