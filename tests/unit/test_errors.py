from __future__ import annotations

import pickle

import asyncpg
import pytest

from strata.actors.postgres import (
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

ALL = [
    DatabaseError,
    DatabaseUnavailable,
    InsufficientPrivilege,
    IntegrityError,
    MigrationError,
    NotFound,
    QueryError,
    SerializationFailure,
    UniqueViolation,
]


@pytest.mark.parametrize("cls", ALL)
def test_every_error_pickles_with_its_message_and_sqlstate(cls: type[DatabaseError]) -> None:
    error = cls("something failed", sqlstate="12345")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert str(copy) == "something failed" and copy.sqlstate == "12345"


@pytest.mark.parametrize(
    ("raised", "expected", "retriable"),
    [
        (asyncpg.exceptions.UniqueViolationError("dup"), UniqueViolation, False),
        (asyncpg.exceptions.ForeignKeyViolationError("fk"), IntegrityError, False),
        (asyncpg.exceptions.SerializationError("race"), SerializationFailure, True),
        (asyncpg.exceptions.DeadlockDetectedError("deadlock"), SerializationFailure, True),
        (asyncpg.exceptions.InsufficientPrivilegeError("no"), InsufficientPrivilege, False),
        (asyncpg.exceptions.PostgresSyntaxError("syntax"), QueryError, False),
        (asyncpg.exceptions.ConnectionDoesNotExistError("gone"), DatabaseUnavailable, True),
        (asyncpg.exceptions.AdminShutdownError("shutdown"), DatabaseUnavailable, True),
        (ConnectionRefusedError("refused"), DatabaseUnavailable, True),
        (TimeoutError(), CommandTimedOut, True),
    ],
)
def test_asyncpg_errors_map_to_typed_errors(raised: Exception, expected: type[DatabaseError], retriable: bool) -> None:
    with pytest.raises(expected) as caught, map_asyncpg_errors():
        raise raised
    assert type(caught.value) is expected
    assert caught.value.retriable is retriable
    assert caught.value.__cause__ is raised


def test_sqlstate_is_kept() -> None:
    with pytest.raises(UniqueViolation) as caught, map_asyncpg_errors():
        raise asyncpg.exceptions.UniqueViolationError("duplicate key")
    assert caught.value.sqlstate == "23505"


def test_not_found_is_also_a_lookup_error() -> None:
    assert issubclass(NotFound, LookupError)


def test_caller_errors_pass_through_unchanged() -> None:
    with pytest.raises(KeyError), map_asyncpg_errors():
        raise KeyError("mine")
