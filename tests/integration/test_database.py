"""The Database interface on both backends, against the session's real PostgreSQL and Ray."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import ray

from strata.actors.postgres import (
    Database,
    DatabaseUnavailable,
    InsufficientPrivilege,
    PoolActorDatabase,
    QueryError,
    ReplicaPoolDatabase,
    UniqueViolation,
    load_migrations,
    pool_actor_name,
    pool_size_for,
    service_dsn,
    service_migrations_dir,
)
from tests.conftest import System
from tests.integration import units_of_work
from tests.integration.units_of_work import Boom

pytestmark = pytest.mark.integration

ray.cloudpickle.register_pickle_by_value(units_of_work)


def _replica_db(system: System, application_name: str, max_replicas: int = 1) -> ReplicaPoolDatabase:
    settings = system.runtime.settings
    return ReplicaPoolDatabase(
        service_dsn(settings, "data"),
        max_size=pool_size_for(settings.db_connections_per_service, max_replicas),
        command_timeout=10,
        application_name=application_name,
    )


@pytest.fixture(params=["replica", "actors"])
async def database(request: pytest.FixtureRequest, system: System, ray_driver: None) -> AsyncIterator[Database]:
    db: ReplicaPoolDatabase | PoolActorDatabase
    if request.param == "replica":
        db = _replica_db(system, "strata-test-replica")
    else:
        db = PoolActorDatabase.from_settings(system.runtime.settings, "data")
    await db.start()
    yield db
    await db.aclose()


@pytest.fixture
async def table(database: Database) -> AsyncIterator[str]:
    name = f"t_{uuid.uuid4().hex[:10]}"
    await database.execute(f"CREATE TABLE data.{name} (id serial PRIMARY KEY, value text UNIQUE NOT NULL)")
    yield name
    await database.execute(f"DROP TABLE data.{name}")


async def _count(db: Database, table: str) -> int:
    return int(await db.fetchval(f"SELECT count(*) FROM data.{table}"))


async def test_basic_operations_return_plain_rows(database: Database, table: str) -> None:
    assert await database.execute(f"INSERT INTO data.{table} (value) VALUES ($1), ($2)", "a", "b") == "INSERT 0 2"
    rows = await database.fetch(f"SELECT value FROM data.{table} ORDER BY value")
    assert rows == [{"value": "a"}, {"value": "b"}]
    assert await database.fetchrow(f"SELECT value FROM data.{table} WHERE value = $1", "zz") is None
    assert (await database.fetch_one(f"SELECT value FROM data.{table} WHERE value = $1", "a")) == {"value": "a"}
    assert await database.execute(f"DELETE FROM data.{table} WHERE value = $1", "b") == "DELETE 1"


async def test_exception_inside_unit_of_work_leaves_no_rows(database: Database, table: str) -> None:
    with pytest.raises(Boom):
        await database.run_in_transaction(units_of_work.insert_then_fail, table, "lost")
    assert await _count(database, table) == 0
    assert await database.run_in_transaction(units_of_work.insert_two, table, "x", "y") == 2


async def test_keyword_arguments_reach_the_unit_of_work(database: Database, table: str) -> None:
    stored = await database.run_in_transaction(units_of_work.insert_labelled, table, value="kw", label="by-name-")
    assert stored == "by-name-kw"
    assert await database.fetch(f"SELECT value FROM data.{table}") == [{"value": "by-name-kw"}]
    # `isolation` belongs to the transaction, never to the unit of work: a wrong one is refused before anything runs.
    with pytest.raises(ValueError, match="isolation"):
        await database.run_in_transaction(units_of_work.insert_labelled, table, value="no", isolation="chaos")
    assert await database.run_in_transaction(units_of_work.insert_labelled, table, value="x", isolation="serializable")
    assert await _count(database, table) == 2


async def test_unique_violation_inside_unit_of_work_rolls_back_both_rows(database: Database, table: str) -> None:
    with pytest.raises(UniqueViolation) as caught:
        await database.run_in_transaction(units_of_work.insert_two, table, "same", "same")
    assert caught.value.sqlstate == "23505"
    assert await _count(database, table) == 0


async def test_asyncpg_errors_arrive_typed(database: Database, table: str) -> None:
    await database.execute(f"INSERT INTO data.{table} (value) VALUES ('dup')")
    with pytest.raises(UniqueViolation):
        await database.execute(f"INSERT INTO data.{table} (value) VALUES ('dup')")
    with pytest.raises(QueryError) as syntax:
        await database.fetch("SELEKT 1")
    assert syntax.value.sqlstate == "42601"
    with pytest.raises(InsufficientPrivilege):
        await database.fetch("SELECT * FROM users.schema_migrations")
    with pytest.raises(Exception) as not_found:
        await database.fetch_one(f"SELECT 1 FROM data.{table} WHERE value = 'missing'")
    assert isinstance(not_found.value, LookupError)


async def _peak_connections(system: System, application_name: str, work: asyncio.Future[list[object]]) -> int:
    """Sample pg_stat_activity while ``work`` runs; the most connections seen for ``application_name``."""
    conn = await asyncpg.connect(system.admin_dsn)
    peak = 0
    try:
        while not work.done():
            count = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", application_name
            )
            peak = max(peak, int(count))
            await asyncio.sleep(0.005)
    finally:
        await conn.close()
    return peak


async def test_200_concurrent_queries_stay_within_the_replica_budget(system: System) -> None:
    """Two replicas of a deployment whose max_replicas is 2: together within db_connections_per_service."""
    budget = system.runtime.settings.db_connections_per_service
    name = f"strata-test-budget-{uuid.uuid4().hex[:6]}"
    replicas = [_replica_db(system, name, max_replicas=2) for _ in range(2)]
    for db in replicas:
        await db.start()
    try:
        work = asyncio.gather(*(replicas[i % 2].fetchval("SELECT pg_sleep(0.02)") for i in range(200)))
        peak = await _peak_connections(system, name, work)
        await work
    finally:
        for db in replicas:
            await db.aclose()
    assert 1 <= peak <= budget, f"peak {peak} connections against a budget of {budget}"
    assert peak >= budget // 2, "the pools never ran concurrently, so the check proves nothing"


async def test_200_concurrent_queries_stay_within_the_pool_actor_budget(system: System, ray_driver: None) -> None:
    budget = system.runtime.settings.db_pool_actor_connections
    db = PoolActorDatabase.from_settings(system.runtime.settings, "data")
    await db.start()
    work = asyncio.gather(*(db.fetchval("SELECT pg_sleep(0.02)") for _ in range(200)))
    peak = await _peak_connections(system, "strata-data-pool-actor", work)
    await work
    assert 1 <= peak <= budget, f"peak {peak} connections against a budget of {budget}"
    assert peak > 1, "the pool actors never ran concurrently, so the check proves nothing"


async def _until_dead(actor: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            await actor.stats.remote()
        except ray.exceptions.RayActorError:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the killed pool actor still answers")


async def test_killed_pool_actor_is_replaced_and_the_next_call_succeeds(system: System, ray_driver: None) -> None:
    db = PoolActorDatabase("data", actors=1, connections=2)
    await db.start()
    assert await db.fetchval("SELECT 41 + 1") == 42
    victim = ray.get_actor(pool_actor_name("data", 0), namespace="strata")
    ray.kill(victim, no_restart=True)
    # ray.kill returns before the actor is gone: a call right after it may still be served by the dying actor,
    # and no replacement would be made. Wait until it is gone, which is the case this test is about.
    await _until_dead(victim)
    assert await db.fetchval("SELECT 42 + 1") == 43
    replacement = ray.get_actor(pool_actor_name("data", 0), namespace="strata")
    assert replacement._actor_id != victim._actor_id
    # A second client (another process's view) finds the replacement by name.
    other = PoolActorDatabase("data", actors=1, connections=2)
    assert await other.fetchval("SELECT 1") == 1


async def test_write_to_a_dead_pool_actor_is_reported_not_retried(system: System, ray_driver: None) -> None:
    db = PoolActorDatabase("data", actors=1, connections=2)
    assert await db.fetchval("SELECT 1") == 1
    actor = ray.get_actor(pool_actor_name("data", 0), namespace="strata")
    ray.kill(actor, no_restart=True)
    await _until_dead(actor)  # ray.kill returns before the actor is gone: a call right after it may still be served
    # A write is never retried (it may have committed before its actor died): it is reported...
    with pytest.raises(DatabaseUnavailable):
        await db.execute("SELECT 1")
    # ...and the actor is replaced, so the next write succeeds.
    assert await db.execute("SELECT 1") == "SELECT 1"


async def test_unqualified_names_resolve_in_the_services_own_schema(system: System, ray_driver: None) -> None:
    from strata.actors.postgres import open_database

    data_migrations = load_migrations(service_migrations_dir("data"))
    assert data_migrations
    for backend in ("replica", "actors"):
        settings = system.runtime.settings.model_copy(update={"db_backends": {"data": backend}})
        db = await open_database(settings, "data")
        try:
            assert await db.fetchval("SELECT current_schema()") == "data"
            # The unqualified name is data's own table: it lists every migration the data service ships.
            assert await db.fetchval("SELECT count(*) FROM schema_migrations") == len(data_migrations)
        finally:
            await db.aclose()
