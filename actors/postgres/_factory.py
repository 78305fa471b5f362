"""Choose a service's database backend from the settings."""

from __future__ import annotations

from strata.actors.postgres._database import Database, ReplicaPoolDatabase, pool_size_for
from strata.actors.postgres._pool_actor import PoolActorDatabase
from strata.actors.postgres._roles import service_dsn
from strata.schemas import Settings


async def open_database(settings: Settings, service: str, *, max_replicas: int = 1) -> Database:
    """A started :class:`Database` for ``service``, on the backend ``settings`` choose for it.

    ``max_replicas`` is the most replicas the calling deployment may run: the
    in-replica pool takes ``db_connections_per_service / max_replicas``
    connections, so the deployment as a whole stays within the budget.
    """
    database: ReplicaPoolDatabase | PoolActorDatabase
    if settings.db_backend(service) == "actors":
        database = PoolActorDatabase.from_settings(settings, service)
    else:
        database = ReplicaPoolDatabase(
            service_dsn(settings, service),
            max_size=pool_size_for(settings.db_connections_per_service, max_replicas),
            command_timeout=settings.db_command_timeout_s,
            application_name=f"strata-{service}-replica",
            schema=service,
        )
    await database.start()
    return database
