"""What every service replica shares: its database, its health check and its readiness answer.

Deployments stay thin adapters (STYLE: Ray at the edges): a service's domain
code takes a :class:`~strata.actors.postgres.Database` as an argument and knows
nothing of Serve.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Concatenate, ParamSpec, Protocol, TypeVar

from ray import serve

from strata.actors.consumers import Handler, ensure_consumers
from strata.actors.outbox import ensure_relays, outbox_backlog
from strata.actors.postgres import (
    AsyncpgPool,
    Database,
    DatabaseError,
    DatabaseUnavailable,
    PoolState,
    ReplicaPoolDatabase,
    RoutedDatabase,
    open_database,
)
from strata.contracts import ReplicaOperations
from strata.schemas import (
    ConsumerGroupSpec,
    DatabaseCheck,
    OutboxBacklog,
    ServiceReadiness,
    ServiceSpec,
    ServiceUnavailable,
    Settings,
    StandbyCheck,
    service_spec,
)
from strata.serve_apps._consistency import consistent
from strata.serve_apps._faults import FaultInjectable, ReplicaFaults
from strata.serve_apps._faulty_database import with_fault_point
from strata.serve_apps._logging import route_strata_logs_to_serve
from strata.serve_apps._loop import check_event_loop

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


class _Service(Protocol):
    service: ClassVar[str]


R = TypeVar("R", bound=_Service)

# A pool that cannot run SELECT 1 this fast is exhausted or broken; well within the 5 s health check timeout.
_POOL_CHECK_TIMEOUT_S = 2.0
READINESS_TIMEOUT_S = 3.0
# What Serve itself calls on a replica, not a caller: never wrapped in a read scope.
_NOT_CALLS = frozenset({"check_health", "reconfigure", "record_autoscaling_stats"})


def deployment_max_replicas() -> int:
    """The most replicas this replica's deployment may run (1 outside Serve).

    Read from the replica context, so the pool size follows whatever
    ``serve.yaml`` or an operator's override says.
    """
    try:
        config = serve.get_replica_context()._deployment_config
    except Exception:  # noqa: BLE001 - not inside a replica
        return 1
    if config.autoscaling_config is not None:
        return max(1, int(config.autoscaling_config.max_replicas))
    return max(1, int(config.num_replicas or 1))


def unavailable_without_database(
    method: Callable[Concatenate[R, P], Awaitable[T]],
) -> Callable[Concatenate[R, P], Awaitable[T]]:
    """``method``, raising :class:`~strata.schemas.ServiceUnavailable` (503, ``Retry-After: 2``) where it raised
    :class:`~strata.actors.postgres.DatabaseUnavailable`.

    Not the request's fault, and not a bug: the service's database does not answer (down, restarting, or a command
    that timed out); the caller may retry, and a retried POST is safe with an Idempotency-Key. Mapped here, before the
    hop, so that callers recognise it as the domain error it is without importing any database module (the contracts
    import none); no internal detail (the driver's message) crosses.
    """

    @functools.wraps(method)
    async def call(self: R, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(self, *args, **kwargs)
        except DatabaseUnavailable:
            raise ServiceUnavailable(f"the {self.service} service cannot reach its database", retry_after=2) from None

    return call


def consumer_handler(group: ConsumerGroupSpec) -> Handler:
    """The effect function a consumer group's spec names (``module:function``)."""
    module, _, name = group.handler.partition(":")
    handler: Handler = getattr(importlib.import_module(module), name)
    return handler


class ServiceReplica(FaultInjectable):
    """Base of the service deployments (auth, users, data, audit).

    What a service owns besides its calls comes from its registry spec (:func:`~strata.schemas.service_spec`):
    its database, its outbox relays and its consumer groups, which every replica keeps running.
    """

    service: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every call a service defines runs in its caller's read scope when the caller sends one (see
        :mod:`~strata.serve_apps._consistency`): reads see the caller's own writes, writes report their commit; and a
        call that cannot reach the database fails as ``ServiceUnavailable`` (:func:`unavailable_without_database`)."""
        super().__init_subclass__(**kwargs)
        for name, member in list(vars(cls).items()):
            if name.startswith("_") or name in _NOT_CALLS or not inspect.iscoroutinefunction(member):
                continue
            setattr(cls, name, consistent(unavailable_without_database(member)))

    async def __init__(self) -> None:  # type: ignore[misc]  # Serve awaits an async constructor
        route_strata_logs_to_serve()
        self._spec: ServiceSpec = service_spec(self.service)
        self._settings = Settings()
        self._faults = ReplicaFaults(self._settings.fault_injection)
        self._db: Database = await open_database(self._settings, self.service, max_replicas=deployment_max_replicas())
        self._request_db = with_fault_point(self._db, self._faults)
        self._ensure_background()
        logger.info("%s replica started (database backend %s)", self.service, self._settings.db_backend(self.service))

    def _ensure_background(self) -> None:
        """The service's relay actors and consumer runners, created where missing (detached, restarted by Ray)."""
        if self._spec.outbox:
            ensure_relays(self.service, self._settings.outbox_relays)
        for group in self._spec.consumer_groups:
            ensure_consumers(group.group, list(group.topics), consumer_handler(group), self.service, group.members)

    @property
    def db(self) -> Database:
        """The database requests use (behind the replica's fault point when fault injection is on)."""
        return self._request_db

    async def check_health(self) -> None:
        """Serve calls this every ``health_check_period_s`` (5 s); three failures in a row replace the replica.

        It checks what a restart would fix: an event loop that no longer runs
        tasks promptly, and the replica's own database pool being closed or no
        longer handing out a connection (``SELECT 1`` within 2 s). PostgreSQL being unreachable
        is not the replica's fault (a restart would not help, and every replica
        would be replaced at once), so it is only logged here and shows in
        ``/readyz``.
        """
        self._faults.check_health()
        await check_event_loop()
        if isinstance(self._db, ReplicaPoolDatabase | RoutedDatabase):
            await self._check_pool(self._db.primary if isinstance(self._db, RoutedDatabase) else self._db)
        # A relay or consumer runner killed for good (not restarted by Ray) is created again here, within one period.
        self._ensure_background()

    async def _check_pool(self, pool: AsyncpgPool) -> None:
        # Only the replica's own pool: pool actors (the other backend) are restarted by Ray, not by this check.
        if pool.state is PoolState.CLOSED:
            raise RuntimeError("database pool is closed")
        try:
            await asyncio.wait_for(pool.check(), timeout=_POOL_CHECK_TIMEOUT_S)
        except TimeoutError as exc:
            raise RuntimeError(f"the database pool gave no answer within {_POOL_CHECK_TIMEOUT_S:.0f}s") from exc
        except DatabaseError as exc:
            logger.info("%s health check: database unreachable (%s), see /readyz", self.service, type(exc).__name__)

    async def _check_database(self) -> DatabaseCheck:
        """Readiness of this service's path to PostgreSQL, as the gateway's ``/readyz`` shows it."""
        try:
            await asyncio.wait_for(self._db.check(), timeout=READINESS_TIMEOUT_S)
        except (DatabaseError, TimeoutError) as exc:
            return DatabaseCheck(status="down", error=type(exc).__name__)
        return DatabaseCheck(status="up")

    async def readiness(self) -> ServiceReadiness:
        """The database check and, for a service with an outbox, its backlog (unsent rows, oldest age)."""
        database = await self._check_database()
        standbys = (
            [StandbyCheck.model_validate(report) for report in self._db.report()]
            if isinstance(self._db, RoutedDatabase)
            else []
        )
        if not self._spec.outbox or database.status != "up":
            return ServiceReadiness(database=database, standbys=standbys)
        try:
            backlog = await asyncio.wait_for(outbox_backlog(self._db, self.service), READINESS_TIMEOUT_S)
        except (DatabaseError, TimeoutError) as exc:
            outbox = OutboxBacklog(error=type(exc).__name__)
        else:
            outbox = OutboxBacklog.model_validate(backlog)
        return ServiceReadiness(database=database, outbox=outbox, standbys=standbys)

    async def __del__(self) -> None:
        db: Database | None = getattr(self, "_db", None)  # absent when __init__ failed
        if db is not None:
            await db.aclose()


def _implements(replica: ServiceReplica) -> ReplicaOperations:
    """Never called: mypy checks here that every replica answers what every client may ask (``readiness``)."""
    return replica
