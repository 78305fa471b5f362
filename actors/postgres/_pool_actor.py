"""Named, detached pool actors and the client that spreads calls over them.

A pool actor is an async Ray actor holding one asyncpg pool for one service's
role. ``db_pool_actors`` of them exist per service, named
``strata-pg-<service>-<n>`` in the ``strata`` namespace and found with
``get_if_exists``, so every process (replica, background actor, script) shares
the same few pools and the connection count stays within
``db_pool_actor_connections`` however many callers there are.

:class:`PoolActorDatabase` implements :class:`Database` over them: each call goes
to the actor with the fewest calls in flight from this client (ties at
random). A dead actor is replaced (Ray restarts it, or the client creates it
anew); a read is retried up to three times (on the least busy actor, which may be the
replacement), a write raises
:class:`DatabaseUnavailable`, since a write may have committed before its actor
died, and the next call goes to the replacement.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any, TypeVar

import ray
from ray.actor import ActorHandle

from strata.actors._detached import NAMESPACE, ensure_detached
from strata.actors.postgres._database import (
    AsyncpgPool,
    Isolation,
    Row,
    TransactionFn,
    check_isolation,
    require_row,
)
from strata.actors.postgres._errors import DatabaseUnavailable
from strata.actors.postgres._roles import check_service_name, service_dsn
from strata.schemas import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

_READ_ATTEMPTS = 4
_NAME_RELEASE_POLLS = 50
_ACTOR_GONE = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)


def pool_actor_name(service: str, index: int) -> str:
    return f"strata-pg-{check_service_name(service)}-{index}"


class PostgresPoolActor:
    """One asyncpg pool for one service's role, behind a Ray actor.

    The DSN is made inside the actor from its own environment
    (``STRATA_DATABASE_URL``, and its service's credentials: ``STRATA_CREDENTIALS_FILE``),
    so no password travels in a Ray call.
    """

    def __init__(self, service: str, max_size: int) -> None:
        settings = Settings.of_service(service)
        self._service = service
        self._pool = AsyncpgPool(
            service_dsn(settings, service),
            max_size=max_size,
            command_timeout=settings.db_command_timeout_s,
            application_name=f"strata-{service}-pool-actor",
            schema=service,
        )

    async def _ensure_started(self) -> AsyncpgPool:
        await self._pool.start()
        return self._pool

    async def fetch(self, query: str, *args: Any) -> list[Row]:
        return await (await self._ensure_started()).fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> Row | None:
        return await (await self._ensure_started()).fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await (await self._ensure_started()).fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        return await (await self._ensure_started()).execute(query, *args)

    async def run_in_transaction(
        self, fn: TransactionFn[T], args: tuple[Any, ...], kwargs: dict[str, Any], isolation: Isolation
    ) -> T:
        # The client's arguments arrive packed, so a unit of work's keyword arguments never meet this method's own.
        return await (await self._ensure_started()).run_in_transaction(fn, *args, isolation=isolation, **kwargs)

    async def read(self, fn: TransactionFn[T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        return await (await self._ensure_started()).read(fn, *args, **kwargs)

    async def check(self) -> None:
        await (await self._ensure_started()).check()

    async def stats(self) -> dict[str, Any]:
        return {"service": self._service, "max_size": self._pool.max_size, "state": self._pool.state.value}


_RemotePoolActor = ray.remote(PostgresPoolActor)


def get_or_create_pool_actor(service: str, index: int, max_size: int) -> ActorHandle[Any]:
    """The pool actor ``index`` of ``service``, created detached if it does not exist yet."""
    # Async actor: many calls wait on the pool at once.
    return ensure_detached(_RemotePoolActor, pool_actor_name(service, index), service, max_size, max_concurrency=1000)


class PoolActorDatabase:
    """:class:`Database` over the pool actors of one service; call from any Ray worker or driver."""

    def __init__(self, service: str, *, actors: int, connections: int) -> None:
        if connections < actors:
            raise ValueError(f"connections={connections} must be at least actors={actors}")
        self._service = check_service_name(service)
        self._per_actor = connections // actors
        self._actors: list[ActorHandle[Any] | None] = [None] * actors
        self._in_flight = [0] * actors
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings, service: str) -> PoolActorDatabase:
        return cls(service, actors=settings.db_pool_actors, connections=settings.db_pool_actor_connections)

    async def start(self) -> None:
        for index in range(len(self._actors)):
            self._actor(index)

    async def aclose(self) -> None:
        """Forget the actors (they are shared and detached, so they keep running). Safe to call twice."""
        self._closed = True
        self._actors = [None] * len(self._actors)

    def _actor(self, index: int) -> ActorHandle[Any]:
        actor = self._actors[index]
        if actor is None:
            actor = get_or_create_pool_actor(self._service, index, self._per_actor)
            self._actors[index] = actor
        return actor

    def _choose(self) -> int:
        fewest = min(self._in_flight)
        return random.choice([i for i, n in enumerate(self._in_flight) if n == fewest])

    async def _call(self, method: str, *args: Any, idempotent: bool) -> Any:
        if self._closed:
            raise DatabaseUnavailable("database client is closed")
        # A read may go to a replacement (which Ray may take a moment to register under the name); a write
        # is tried once, since it may have committed before its actor died.
        attempts = _READ_ATTEMPTS if idempotent else 1
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(0.2 * attempt)
            index = self._choose()
            actor = self._actor(index)
            self._in_flight[index] += 1
            try:
                return await getattr(actor, method).remote(*args)
            except _ACTOR_GONE as exc:
                logger.warning(
                    "pool actor %s is gone (%s); replacing it",
                    pool_actor_name(self._service, index),
                    type(exc).__name__,
                )
                await self._replace(index, actor)
                if attempt + 1 >= attempts:
                    raise DatabaseUnavailable(
                        f"pool actor {pool_actor_name(self._service, index)} died during the call; it was replaced"
                    ) from exc
            finally:
                self._in_flight[index] -= 1
        raise AssertionError("unreachable")  # pragma: no cover

    async def _replace(self, index: int, dead: ActorHandle[Any]) -> None:
        if self._actors[index] is dead:
            self._actors[index] = None
        with contextlib.suppress(Exception):
            ray.kill(dead, no_restart=True)
        # A dead actor keeps its name for a moment: wait until the name is free (or taken by a replacement), so
        # the next call creates or finds the replacement instead of the dead actor again.
        name = pool_actor_name(self._service, index)
        for _ in range(_NAME_RELEASE_POLLS):
            try:
                current = ray.get_actor(name, namespace=NAMESPACE)
            except ValueError:
                return
            if current._actor_id != dead._actor_id:
                return
            await asyncio.sleep(0.1)

    async def fetch(self, query: str, *args: Any) -> list[Row]:
        return await self._call("fetch", query, *args, idempotent=True)  # type: ignore[no-any-return]

    async def fetchrow(self, query: str, *args: Any) -> Row | None:
        return await self._call("fetchrow", query, *args, idempotent=True)  # type: ignore[no-any-return]

    async def fetch_one(self, query: str, *args: Any) -> Row:
        return require_row(await self.fetchrow(query, *args))

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._call("fetchval", query, *args, idempotent=True)

    async def execute(self, query: str, *args: Any) -> str:
        return await self._call("execute", query, *args, idempotent=False)  # type: ignore[no-any-return]

    async def run_in_transaction(
        self, fn: TransactionFn[T], /, *args: Any, isolation: Isolation = "read_committed", **kwargs: Any
    ) -> T:
        check_isolation(isolation)
        return await self._call("run_in_transaction", fn, args, kwargs, isolation, idempotent=False)  # type: ignore[no-any-return]

    async def read(self, fn: TransactionFn[T], /, *args: Any, **kwargs: Any) -> T:
        """A read-only unit of work on the primary (pool actors hold no standby pools): safe to retry."""
        return await self._call("read", fn, args, kwargs, idempotent=True)  # type: ignore[no-any-return]

    async def check(self) -> None:
        await self._call("check", idempotent=True)
