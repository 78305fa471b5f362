"""Choose a service's database backend from the settings."""

from __future__ import annotations

from strata.actors.postgres._database import Database, ReplicaPoolDatabase, pool_size_for
from strata.actors.postgres._pool_actor import PoolActorDatabase
from strata.actors.postgres._roles import replica_dsn, service_dsn
from strata.actors.postgres._routing import ReplicaBounds, RoutedDatabase, standby_name
from strata.schemas import Settings, service_spec


async def open_database(settings: Settings, service: str, *, max_replicas: int = 1) -> Database:
    """A started :class:`Database` for ``service``, on the backend ``settings`` choose for it.

    ``max_replicas`` is the most replicas the calling deployment may run: the
    in-replica pool takes ``db_connections_per_service / max_replicas``
    connections, so the deployment as a whole stays within the budget.
    """
    database: ReplicaPoolDatabase | PoolActorDatabase | RoutedDatabase
    if settings.db_backend(service) == "actors":
        database = PoolActorDatabase.from_settings(settings, service)
    else:
        size = pool_size_for(settings.db_connections_per_service, max_replicas)
        database = _pool(service_dsn(settings, service), settings, service, size)
        replicas = settings.database_replica_urls if service_spec(service).replica_reads else []
        if replicas:
            standbys = [
                (standby_name(url, n), _pool(replica_dsn(settings, service, url), settings, service, size))
                for n, url in enumerate(replicas)
            ]
            database = RoutedDatabase(database, standbys, bounds=replica_bounds(settings), service=service)
    await database.start()
    return database


def _pool(dsn: str, settings: Settings, service: str, size: int) -> ReplicaPoolDatabase:
    return ReplicaPoolDatabase(
        dsn,
        max_size=size,
        command_timeout=settings.db_command_timeout_s,
        application_name=f"strata-{service}-replica",
        schema=service,
    )


def replica_bounds(settings: Settings) -> ReplicaBounds:
    return ReplicaBounds(
        max_lag_bytes=settings.replica_max_lag_bytes,
        max_lag_s=settings.replica_max_lag_s,
        read_wait_s=settings.replica_read_wait_s,
        poll_s=settings.replica_poll_s,
    )
