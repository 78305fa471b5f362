"""Idempotency keys (IETF httpapi ``Idempotency-Key`` draft) for the creating calls, in their own transaction.

A key is remembered per ``(caller, operation)`` with a fingerprint of the request (SHA-256 of the canonical JSON of
the operation's arguments) and the first answer, written in the SAME transaction as the effect: the answer is
stored if and only if the effect commits. How one call goes (:func:`begin`, then :func:`remember`):

1. ``pg_advisory_xact_lock`` on a 64-bit hash of ``(caller, operation, key)``, waiting at most
   ``idempotency_wait_s`` (``lock_timeout``): a first request with that key still running makes the retry a
   :class:`~strata.schemas.Conflict` ``idempotency-in-progress`` (409, ``retry_after`` 1 s).
2. With the lock held: a stored, unexpired answer with the same fingerprint is replayed (no effect, no event); another
   fingerprint is :class:`~strata.schemas.Unprocessable` ``idempotency-key-reused``; none (or an expired one,
   deleted here): the caller does the effect and :func:`remember` stores its answer.

The caller authorizes the request before :func:`begin` (the collection's role, in the same transaction): a stored
answer is replayed only to a caller who may still make the request, so one who lost the right gets the refusal a
fresh request would get.

Keys are 1..255 printable ASCII characters (else ``invalid-idempotency-key``). Expired rows are pruned by the replicas
(:func:`prune_expired_keys`) in bounded batches.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TypeVar

import asyncpg
import orjson
from pydantic import BaseModel, JsonValue

from strata.schemas import Conflict, Unprocessable

_MAX_KEY_CHARS = 255
AnswerT = TypeVar("AnswerT", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    """One request under an ``Idempotency-Key``: who, which operation, the key and the request's fingerprint."""

    caller: str
    operation: str
    key: str
    fingerprint: bytes

    @property
    def lock_id(self) -> int:
        """A signed 64-bit advisory lock id for this key."""
        digest = hashlib.sha256(f"{self.caller}\0{self.operation}\0{self.key}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    status: int
    response: bytes
    location: str | None


def check_idempotency_key(key: str) -> str:
    """``key`` when it is 1..255 printable ASCII characters; :class:`Unprocessable` otherwise."""
    if not 1 <= len(key) <= _MAX_KEY_CHARS or not all(" " <= ch <= "~" for ch in key):
        raise Unprocessable(
            f"an Idempotency-Key is 1 to {_MAX_KEY_CHARS} printable ASCII characters", code="invalid-idempotency-key"
        )
    return key


def fingerprint(arguments: JsonValue) -> bytes:
    """SHA-256 of the canonical JSON (sorted keys) of an operation's arguments."""
    return hashlib.sha256(orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS)).digest()


def idempotent_request(caller: str, operation: str, key: str | None, arguments: JsonValue) -> IdempotentRequest | None:
    """The request under ``key``, or ``None`` when the call carries no key."""
    if key is None:
        return None
    return IdempotentRequest(caller, operation, check_idempotency_key(key), fingerprint(arguments))


async def begin(conn: asyncpg.Connection, request: IdempotentRequest, *, wait_s: float) -> StoredAnswer | None:
    """Take the key's lock (at most ``wait_s``); the answer to replay, or ``None`` when the effect must run."""
    await conn.execute("SELECT set_config('lock_timeout', $1, true)", f"{max(1, int(wait_s * 1000))}ms")
    try:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", request.lock_id)
    except asyncpg.exceptions.LockNotAvailableError:
        raise Conflict(
            "a request with this Idempotency-Key is still being processed",
            code="idempotency-in-progress",
            retry_after=1,
        ) from None
    await conn.execute("SET LOCAL lock_timeout TO DEFAULT")
    row = await conn.fetchrow(
        "SELECT fingerprint, status, response, location, expires_at <= now() AS expired FROM data.idempotency_keys"
        " WHERE caller = $1 AND operation = $2 AND key = $3",
        request.caller,
        request.operation,
        request.key,
    )
    if row is None:
        return None
    if row["expired"]:
        await conn.execute(
            "DELETE FROM data.idempotency_keys WHERE caller = $1 AND operation = $2 AND key = $3",
            request.caller,
            request.operation,
            request.key,
        )
        return None
    if bytes(row["fingerprint"]) != request.fingerprint:
        raise Unprocessable("this Idempotency-Key was used for another request", code="idempotency-key-reused")
    return StoredAnswer(row["status"], bytes(row["response"]), row["location"])


async def remember(
    conn: asyncpg.Connection,
    request: IdempotentRequest,
    answer: StoredAnswer,
    *,
    ttl_s: int,
) -> None:
    """Store the first answer to ``request`` (call in the effect's transaction, after the effect)."""
    await conn.execute(
        "INSERT INTO data.idempotency_keys"
        " (caller, operation, key, fingerprint, status, response, location, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8))",
        request.caller,
        request.operation,
        request.key,
        request.fingerprint,
        answer.status,
        answer.response,
        answer.location,
        float(ttl_s),
    )


async def replay(
    conn: asyncpg.Connection, request: IdempotentRequest | None, answer: type[AnswerT], *, wait_s: float
) -> AnswerT | None:
    """The first answer to ``request``, marked ``replayed``; ``None`` without a key or when the effect must run
    (:func:`begin`, then the stored answer read back as ``answer``)."""
    if request is None:
        return None
    stored = await begin(conn, request, wait_s=wait_s)
    if stored is None:
        return None
    return answer.model_validate_json(stored.response).model_copy(update={"replayed": True})


async def store(
    conn: asyncpg.Connection,
    request: IdempotentRequest | None,
    answer: BaseModel,
    *,
    status: int,
    location: str | None,
    ttl_s: int,
) -> None:
    """Remember ``answer`` as the first answer to ``request`` (nothing without a key), after the effect."""
    if request is not None:
        await remember(conn, request, StoredAnswer(status, answer.model_dump_json().encode(), location), ttl_s=ttl_s)


async def prune_expired_keys(conn: asyncpg.Connection, *, batch: int = 1000) -> int:
    """Delete up to ``batch`` expired keys; how many went."""
    deleted = await conn.fetch(
        "DELETE FROM data.idempotency_keys WHERE ctid = ANY (ARRAY("
        " SELECT ctid FROM data.idempotency_keys WHERE expires_at <= now() ORDER BY expires_at LIMIT $1"
        " FOR UPDATE SKIP LOCKED)) RETURNING 1",
        batch,
    )
    return len(deleted)
