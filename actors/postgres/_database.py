"""The ``Database`` interface services use, and its in-replica backend.

A service never holds an asyncpg connection of its own: it calls a
:class:`Database`. Two backends implement it, chosen per service by the
``STRATA_DB_BACKENDS`` setting:

* :class:`ReplicaPoolDatabase` (default): an asyncpg pool inside the calling
  process, normally a Serve replica. The request path stays gateway -> service
  -> PostgreSQL, two hops.
* :class:`~strata.actors.postgres.PoolActorDatabase`: named, detached pool
  actors. One more hop, but the connection count stays bounded however wide a
  deployment grows; background actors and scripts use it.

Rows come back as plain ``dict`` objects on both backends, so they pickle and
compare alike. A unit of work is an importable ``async def fn(conn, *args, **kwargs)``
run inside one transaction: the change and its outbox row commit together or
not at all.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

import asyncpg

from strata.actors._consistency import ReadScope, current_scope, parse_lsn
from strata.actors._metrics import set_gauge
from strata.actors.postgres._errors import (
    DatabaseUnavailable,
    NotFound,
    is_connection_lost,
    map_asyncpg_errors,
    translate,
)

logger = logging.getLogger(__name__)

Row = dict[str, Any]
T = TypeVar("T")
TransactionFn = Callable[..., Awaitable[T]]
"""``async def fn(conn: asyncpg.Connection, *args, **kwargs) -> T``; importable (module level) for the actor backend."""

_DRIVER_ERRORS = (asyncpg.exceptions.PostgresError, asyncpg.exceptions.InterfaceError, OSError)
# Anything else raised inside a unit of work is the caller's own error: it rolls
# the transaction back and propagates unchanged.

Isolation = str  # "read_committed" | "repeatable_read" | "serializable"
_ISOLATIONS = ("read_committed", "repeatable_read", "serializable")


@runtime_checkable
class Database(Protocol):
    """What a service may ask of PostgreSQL. Every method raises only :class:`DatabaseError` subclasses."""

    async def fetch(self, query: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, query: str, *args: Any) -> Row | None: ...

    async def fetch_one(self, query: str, *args: Any) -> Row:
        """Like :meth:`fetchrow`, but a missing row raises :class:`NotFound`."""
        ...

    async def fetchval(self, query: str, *args: Any) -> Any: ...

    async def execute(self, query: str, *args: Any) -> str: ...

    async def run_in_transaction(
        self, fn: TransactionFn[T], /, *args: Any, isolation: Isolation = "read_committed", **kwargs: Any
    ) -> T:
        """``fn(conn, *args, **kwargs)`` inside one transaction; what it returns.

        ``isolation`` is the transaction's own option, so it never reaches ``fn``: a unit of work must not take a
        keyword argument of that name. Every other keyword argument is passed on, on every backend.
        """
        ...

    async def read(self, fn: TransactionFn[T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(conn, *args, **kwargs)`` inside one READ ONLY transaction; what it returns.

        The unit of work may run on a standby (see :class:`~strata.actors.postgres.RoutedDatabase`): one that has
        replayed the caller's position when the call's :class:`~strata.actors.postgres.ReadScope` names one. A
        statement that writes fails (PostgreSQL refuses it in a read-only transaction), so a write cannot reach a
        standby by mistake. Every keyword argument is passed on.
        """
        ...

    async def check(self) -> None:
        """Round-trip to the server; raises :class:`DatabaseUnavailable` when it does not answer."""
        ...

    async def aclose(self) -> None: ...


class PoolState(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


def pool_size_for(budget: int, max_replicas: int) -> int:
    """Connections one replica may hold: the service's budget split across its maximum replicas (at least 1)."""
    if budget < 1 or max_replicas < 1:
        raise ValueError(f"budget={budget} and max_replicas={max_replicas} must both be at least 1")
    return max(1, budget // max_replicas)


def require_row(row: Row | None) -> Row:
    """``row``, or :class:`NotFound` when the query matched none."""
    if row is None:
        raise NotFound("no row matched the query")
    return row


def check_isolation(isolation: str) -> str:
    if isolation not in _ISOLATIONS:
        raise ValueError(f"isolation={isolation!r}; expected one of {_ISOLATIONS}")
    return isolation


class AsyncpgPool:
    """An asyncpg pool with strata's error mapping and one retry of reads after a lost connection.

    A read that fails because its connection died (PostgreSQL restarted, say)
    is retried once on a fresh connection; a write is not retried, since it may
    have committed: it raises :class:`DatabaseUnavailable` and the pool drops its
    stale connections so the next call succeeds. Shared by both backends.
    """

    __slots__ = (
        "_application_name",
        "_command_timeout",
        "_dsn",
        "_in_flight",
        "_max_size",
        "_pool",
        "_schema",
        "_state",
        "reports_commits",
    )

    def __init__(
        self, dsn: str, *, max_size: int, command_timeout: float, application_name: str, schema: str | None = None
    ) -> None:
        if max_size < 1:
            raise ValueError(f"max_size={max_size} must be at least 1")
        self._dsn = dsn
        self._max_size = max_size
        self._command_timeout = command_timeout
        self._application_name = application_name
        self._schema = schema
        self._pool: asyncpg.Pool | None = None
        self._state = PoolState.UNOPENED
        self._in_flight = 0
        self.reports_commits = False
        """Whether a transaction adds its commit position to the caller's scope (on a primary with standbys)."""

    @property
    def max_size(self) -> int:
        return self._max_size

    @property
    def state(self) -> PoolState:
        return self._state

    async def start(self) -> None:
        """Create the pool. No connection is opened yet, so a replica starts even while PostgreSQL is down."""
        if self._state is PoolState.CLOSED:
            raise RuntimeError("this database pool was closed; create a new one")
        if self._pool is not None:
            return
        with map_asyncpg_errors():
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=0,
                max_size=self._max_size,
                command_timeout=self._command_timeout,
                max_inactive_connection_lifetime=60.0,
                server_settings=self._server_settings(),
                timeout=min(self._command_timeout, 10.0),
            )
        self._state = PoolState.OPEN

    def _server_settings(self) -> dict[str, str]:
        settings = {"application_name": self._application_name}
        if self._schema is not None:
            # Unqualified names resolve in the service's own schema only.
            settings["search_path"] = self._schema
        return settings

    async def aclose(self) -> None:
        """Close gently; terminate if that fails. Safe to call twice."""
        pool, self._pool = self._pool, None
        self._state = PoolState.CLOSED
        if pool is None:
            return
        try:
            await pool.close()
        except BaseException:
            pool.terminate()
            raise

    def _require_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            if self._state is PoolState.CLOSED:
                raise DatabaseUnavailable("database pool is closed")
            raise DatabaseUnavailable("database pool was not started")
        return self._pool

    @property
    def in_flight(self) -> int:
        """Calls on this pool right now (waiting for a connection or running)."""
        return self._in_flight

    def _count(self, delta: int) -> None:
        self._in_flight += delta
        set_gauge(
            "strata_db_calls_in_flight",
            "Database calls in flight on a pool (waiting for a connection or running), per pool.",
            self._in_flight,
            {"pool": self._application_name},
        )

    async def _run(self, op: Callable[[asyncpg.Connection], Awaitable[T]], *, idempotent: bool) -> T:
        self._count(+1)
        try:
            return await self._run_counted(op, idempotent=idempotent)
        finally:
            self._count(-1)

    async def _run_counted(self, op: Callable[[asyncpg.Connection], Awaitable[T]], *, idempotent: bool) -> T:
        pool = self._require_pool()
        attempts = 2 if idempotent else 1
        for attempt in range(attempts):
            try:
                async with pool.acquire() as conn:
                    return await op(conn)
            except _DRIVER_ERRORS as exc:
                if is_connection_lost(exc):
                    # Every pooled connection predates the failure: drop them all.
                    await pool.expire_connections()
                    if attempt + 1 < attempts:
                        logger.info("database connection lost, retrying read once: %s", type(exc).__name__)
                        continue
                raise translate(exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def fetch(self, query: str, *args: Any) -> list[Row]:
        async def op(conn: asyncpg.Connection) -> list[Row]:
            return [dict(r) for r in await conn.fetch(query, *args)]

        return await self._run(op, idempotent=True)

    async def fetchrow(self, query: str, *args: Any) -> Row | None:
        async def op(conn: asyncpg.Connection) -> Row | None:
            record = await conn.fetchrow(query, *args)
            return None if record is None else dict(record)

        return await self._run(op, idempotent=True)

    async def fetch_one(self, query: str, *args: Any) -> Row:
        return require_row(await self.fetchrow(query, *args))

    async def fetchval(self, query: str, *args: Any) -> Any:
        async def op(conn: asyncpg.Connection) -> Any:
            return await conn.fetchval(query, *args)

        return await self._run(op, idempotent=True)

    async def execute(self, query: str, *args: Any) -> str:
        async def op(conn: asyncpg.Connection) -> str:
            return str(await conn.execute(query, *args))

        return await self._run(op, idempotent=False)

    async def run_in_transaction(
        self, fn: TransactionFn[T], /, *args: Any, isolation: Isolation = "read_committed", **kwargs: Any
    ) -> T:
        check_isolation(isolation)
        scope = current_scope() if self.reports_commits else None

        async def op(conn: asyncpg.Connection) -> T:
            async with conn.transaction(isolation=isolation):
                result = await fn(conn, *args, **kwargs)
            if scope is not None:
                await _record_commit(conn, scope)
            return result

        return await self._run(op, idempotent=False)

    async def read(self, fn: TransactionFn[T], /, *args: Any, **kwargs: Any) -> T:
        async def op(conn: asyncpg.Connection) -> T:
            async with conn.transaction(readonly=True):
                return await fn(conn, *args, **kwargs)

        return await self._run(op, idempotent=True)

    async def check(self) -> None:
        await self.fetchval("SELECT 1")


async def _record_commit(conn: asyncpg.Connection, scope: ReadScope) -> None:
    """Add the position of the transaction that just committed on ``conn`` to ``scope``.

    The WAL insert position, read right after COMMIT returned, is at or past the commit record's end: a standby
    that has replayed it sees the commit. A failure here cannot undo the commit, so it is logged, not raised; that
    caller's next read may then be served by a standby that has not replayed it yet.
    """
    try:
        scope.wrote(parse_lsn(await conn.fetchval("SELECT pg_current_wal_insert_lsn()::text")))
    except _DRIVER_ERRORS as exc:
        logger.warning("commit position not read after a commit (%s); read-your-writes not assured", exc)


class ReplicaPoolDatabase(AsyncpgPool):
    """The in-replica backend: a small asyncpg pool living in this process (a Serve replica).

    Size it with :func:`pool_size_for` so the replicas of one deployment together
    stay within the service's connection budget.
    """

    __slots__ = ()

    async def __aenter__(self) -> ReplicaPoolDatabase:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
