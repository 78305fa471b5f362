"""A service replica's fault point: its database (see :mod:`~strata.serve_apps._faults`).

Apart from the faults themselves, which the gateway holds too, so that the gateway loads no database code.
"""

from __future__ import annotations

from typing import Any, TypeVar

from strata.actors.postgres import Database, Row, TransactionFn
from strata.serve_apps._faults import ReplicaFaults

T = TypeVar("T")


class FaultyDatabase:
    """A :class:`~strata.actors.postgres.Database` whose every call passes a replica's fault point first."""

    __slots__ = ("_db", "_faults")

    def __init__(self, db: Database, faults: ReplicaFaults) -> None:
        self._db = db
        self._faults = faults

    @property
    def inner(self) -> Database:
        return self._db

    async def fetch(self, query: str, *args: Any) -> list[Row]:
        await self._faults.passed()
        return await self._db.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> Row | None:
        await self._faults.passed()
        return await self._db.fetchrow(query, *args)

    async def fetch_one(self, query: str, *args: Any) -> Row:
        await self._faults.passed()
        return await self._db.fetch_one(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        await self._faults.passed()
        return await self._db.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        await self._faults.passed()
        return await self._db.execute(query, *args)

    async def run_in_transaction(
        self, fn: TransactionFn[T], /, *args: Any, isolation: str = "read_committed", **kwargs: Any
    ) -> T:
        await self._faults.passed()
        return await self._db.run_in_transaction(fn, *args, isolation=isolation, **kwargs)

    async def read(self, fn: TransactionFn[T], /, *args: Any, **kwargs: Any) -> T:
        await self._faults.passed()
        return await self._db.read(fn, *args, **kwargs)

    async def check(self) -> None:
        await self._db.check()

    async def aclose(self) -> None:
        await self._db.aclose()


def with_fault_point(db: Database, faults: ReplicaFaults) -> Database:
    """``db`` behind this replica's fault point when fault injection is on; ``db`` itself when off."""
    return FaultyDatabase(db, faults) if faults.enabled else db
