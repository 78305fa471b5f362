"""Typed database errors, grouped by who must act.

::

    DatabaseError                     base; ``retriable`` says whether the same call may succeed later
    ├── DatabaseUnavailable           the server or the pool cannot be reached (retriable)
    │   └── CommandTimedOut           a command ran past its timeout (the server, or the statement, is slow)
    ├── NotFound (also LookupError)   a row the caller required does not exist
    ├── QueryError                    the server refused the statement; ``sqlstate`` names why
    │   ├── IntegrityError            a constraint was violated
    │   │   └── UniqueViolation       23505
    │   ├── SerializationFailure      40001 / 40P01: retry the whole unit of work (retriable)
    │   └── InsufficientPrivilege     42501: a role reached outside its own schema
    └── MigrationError                a migration could not be applied or was edited after it was

All of them pickle, so they cross Ray calls (pool actors) unchanged. asyncpg's
errors are turned into these in one place, :func:`map_asyncpg_errors`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg


class DatabaseError(Exception):
    """Base of every database error strata raises."""

    retriable: bool = False

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.message, self.sqlstate))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[DatabaseError], message: str, sqlstate: str | None) -> DatabaseError:
    return cls(message, sqlstate=sqlstate)


class DatabaseUnavailable(DatabaseError):
    """PostgreSQL (or the pool actor in front of it) cannot be reached right now."""

    retriable = True


class CommandTimedOut(DatabaseUnavailable):
    """A command ran past its timeout: the server may be slow or gone, or the statement slow every time.

    A caller that retries tells them apart by asking a trivial query (the consumers do)."""


class NotFound(DatabaseError, LookupError):
    """A row the caller required does not exist."""


class QueryError(DatabaseError):
    """The server refused the statement; ``sqlstate`` is the PostgreSQL error code."""


class IntegrityError(QueryError):
    """A constraint (unique, foreign key, check, not null) was violated."""


class UniqueViolation(IntegrityError):
    """A unique constraint was violated (SQLSTATE 23505)."""


class SerializationFailure(QueryError):
    """The transaction lost a serialization race or a deadlock; run the unit of work again."""

    retriable = True


class InsufficientPrivilege(QueryError):
    """The service's role may not touch that object (SQLSTATE 42501)."""


class MigrationError(DatabaseError):
    """A migration could not be applied, or an applied one was edited since."""


# asyncpg errors that mean "the connection is gone", not "the statement is wrong".
_CONNECTION_LOST: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    ConnectionError,
    OSError,
)


def is_connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection or the server went away.

    A timeout is not: the statement may still be running, so it is neither
    retried nor a reason to drop the pool's other connections.
    """
    if isinstance(exc, TimeoutError):
        return False
    if isinstance(exc, _CONNECTION_LOST):
        return True
    return isinstance(exc, asyncpg.exceptions.InterfaceError) and "closed" in str(exc)


def translate(exc: BaseException) -> DatabaseError:
    """The strata error for an asyncpg (or socket) error."""
    if isinstance(exc, DatabaseError):
        return exc
    if isinstance(exc, TimeoutError):
        return CommandTimedOut("database command timed out")
    if is_connection_lost(exc):
        return DatabaseUnavailable(f"database unavailable: {type(exc).__name__}: {exc}".rstrip(": "))
    if isinstance(exc, asyncpg.exceptions.PostgresError):
        sqlstate = getattr(exc, "sqlstate", None)
        message = f"{exc.__class__.__name__} ({sqlstate}): {getattr(exc, 'message', str(exc))}"
        if isinstance(exc, asyncpg.exceptions.UniqueViolationError):
            return UniqueViolation(message, sqlstate=sqlstate)
        if isinstance(exc, asyncpg.exceptions.IntegrityConstraintViolationError):
            return IntegrityError(message, sqlstate=sqlstate)
        if isinstance(exc, asyncpg.exceptions.SerializationError | asyncpg.exceptions.DeadlockDetectedError):
            return SerializationFailure(message, sqlstate=sqlstate)
        if isinstance(exc, asyncpg.exceptions.InsufficientPrivilegeError):
            return InsufficientPrivilege(message, sqlstate=sqlstate)
        return QueryError(message, sqlstate=sqlstate)
    return DatabaseError(f"database error: {type(exc).__name__}: {exc}")


@contextmanager
def map_asyncpg_errors() -> Iterator[None]:
    """Re-raise asyncpg and socket errors as strata's typed errors (``raise ... from exc``)."""
    try:
        yield
    except DatabaseError:
        raise
    except (TimeoutError, asyncpg.exceptions.PostgresError, asyncpg.exceptions.InterfaceError, OSError) as exc:
        raise translate(exc) from exc
