"""Routing reads to standbys (RoutedDatabase), commit positions, and the session memory, against fake pools.

The real thing (a streaming standby of the embedded PostgreSQL, through the gateway) is in
tests/integration/test_replica_reads.py; these pin the decisions on inputs chosen to hit each rule.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from strata.actors.positions import SessionPositions, SharedPositions
from strata.actors.postgres import (
    DatabaseUnavailable,
    InvalidPosition,
    QueryError,
    ReadScope,
    ReplicaBounds,
    RoutedDatabase,
    current_scope,
    format_lsn,
    parse_lsn,
    read_scope,
)
from strata.actors.postgres._routing import PrimaryHistory
from strata.serve_apps._consistency import CONSISTENCY_ARGUMENT, Consistent, ReadAfter, consistent


class FakePool:
    """What a RoutedDatabase asks of a pool: a position, a standby's state, and reads (recorded)."""

    def __init__(self, name: str, *, primary: bool, position: int = 0) -> None:
        self.name = name
        self.primary = primary
        self.position = position
        self.paused = False
        self.up = True
        self.fail_reads: Exception | None = None
        self.reads: list[str] = []
        self.reports_commits = False

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    def _check_up(self) -> None:
        if not self.up:
            raise DatabaseUnavailable(f"{self.name} is down")

    async def fetchval(self, query: str, *args: Any) -> Any:
        self._check_up()
        return format_lsn(self.position)

    async def fetchrow(self, query: str, *args: Any) -> dict[str, Any]:
        self._check_up()
        return {"recovering": not self.primary, "replay": format_lsn(self.position), "paused": self.paused,
                "since_commit_s": 0.5}  # fmt: skip

    async def read(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        self._check_up()
        if self.fail_reads is not None:
            raise self.fail_reads
        self.reads.append(self.name)
        return await fn(self.name, *args, **kwargs)

    async def run_in_transaction(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        self._check_up()
        return await fn(self.name, *args)


async def served_by(conn: str) -> str:
    return conn


BOUNDS = ReplicaBounds(max_lag_bytes=1000, max_lag_s=2.0, read_wait_s=0.02, poll_s=3600)


async def routed(primary_at: int = 100, standby_at: int = 100) -> tuple[RoutedDatabase, FakePool, FakePool]:
    primary, standby = FakePool("primary", primary=True, position=primary_at), FakePool("s0", primary=False)
    standby.position = standby_at
    db = RoutedDatabase(primary, [("s0", standby)], bounds=BOUNDS, service="data")  # type: ignore[arg-type]
    await db.start()  # one poll; the poll interval is an hour, so the tests poll by hand
    return db, primary, standby


def test_positions_read_and_print_as_postgresql_does() -> None:
    assert parse_lsn("0/16B3748") == 0x16B3748
    assert parse_lsn("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert format_lsn(parse_lsn("16/B374D848")) == "16/B374D848"
    for bad in ("", "0/", "/1", "1/2/3", "G/0", "123456789/0", "0/x"):
        with pytest.raises(InvalidPosition):
            parse_lsn(bad)
    with pytest.raises(InvalidPosition):
        format_lsn(1 << 64)


def test_lag_in_seconds_is_how_long_ago_the_primary_first_stood_past_the_replay() -> None:
    history = PrimaryHistory(keep_s=10)
    for at, position in ((0.0, 100), (1.0, 200), (2.0, 300)):
        history.add(at, position)
    assert history.lag_s(300, now=2.5) == 0.0  # replayed everything seen
    assert history.lag_s(150, now=2.5) == 1.5  # the primary was past 150 since t=1
    assert history.lag_s(50, now=2.5) == 2.5
    # Every commit before the last moment the primary stood at or before the replay position is replayed.
    assert history.covered_since(250) == 1.0 and history.covered_since(50) is None


async def test_a_read_without_a_position_goes_to_a_standby_in_rotation() -> None:
    db, primary, _standby = await routed()
    assert await db.read(served_by) == "s0"
    assert db.standbys[0].in_rotation and primary.reads == []


async def test_a_read_whose_position_the_standby_reached_goes_there_else_to_the_primary_after_the_wait() -> None:
    db, _primary, standby = await routed(primary_at=100, standby_at=100)
    with read_scope(after=100):
        assert await db.read(served_by) == "s0"
    with read_scope(after=101):  # the standby never gets there: after read_wait_s, the primary
        assert await db.read(served_by) == "primary"

    async def replay_soon() -> None:
        await asyncio.sleep(0.005)
        standby.position = 102

    with read_scope(after=102):  # it gets there within the wait: the standby
        results = await asyncio.gather(db.read(served_by), replay_soon())
    assert results[0] == "s0"


async def test_a_position_past_the_primarys_own_is_taken_as_the_primarys_and_reported_back() -> None:
    db, primary, _standby = await routed(primary_at=100, standby_at=100)
    with read_scope(after=(1 << 64) - 1) as scope:  # a token signed before the database went back to an earlier point
        assert await db.read(served_by) == "primary"
    assert scope.after == 100 and scope.clamped == 100 and scope.position == 100
    # A position the primary has reached (a fresh commit the standby has not replayed yet) stays as it is.
    primary.position = 150
    with read_scope(after=150) as fresh:
        assert await db.read(served_by) == "primary"
    assert fresh.after == 150 and fresh.clamped is None
    # The caller's scope learns it from the service's answer, so the next token names a position that exists.
    caller = ReadScope(after=(1 << 64) - 1)
    caller.merge(committed=None, staleness_s=None, clamped=150)
    assert caller.position == 150


async def test_a_standby_past_a_bound_leaves_rotation_and_returns_within_half_of_both() -> None:
    db, primary, standby = await routed(primary_at=5000, standby_at=5000)
    primary.position = 6500  # 1500 bytes behind: past 1000
    await db.poll()
    assert not db.standbys[0].in_rotation and await db.read(served_by) == "primary"
    standby.position = 5800  # 700 behind: under the bound, not under half of it
    await db.poll()
    assert not db.standbys[0].in_rotation
    standby.position = 6500  # caught up
    await db.poll()
    assert db.standbys[0].in_rotation and await db.read(served_by) == "s0"
    assert db.report()[0]["status"] == "streaming"


async def test_a_standby_that_does_not_answer_is_skipped_and_a_failed_read_moves_to_the_primary() -> None:
    db, _primary, standby = await routed()
    standby.fail_reads = DatabaseUnavailable("connection lost")
    assert await db.read(served_by) == "primary"
    assert not db.standbys[0].in_rotation  # out until the next poll finds it answering
    standby.fail_reads = QueryError("canceling statement due to conflict with recovery", sqlstate="40001")
    await db.poll()
    assert await db.read(served_by) == "primary"
    standby.fail_reads, standby.up = None, False
    await db.poll()
    assert db.report()[0]["status"] == "down" and await db.read(served_by) == "primary"


async def test_an_error_of_the_read_itself_is_not_a_reason_to_read_again_elsewhere() -> None:
    db, _primary, standby = await routed()
    standby.fail_reads = QueryError("column does not exist", sqlstate="42703")
    with pytest.raises(QueryError):
        await db.read(served_by)


async def test_with_the_primary_down_reads_go_on_from_the_standby_and_say_how_stale() -> None:
    db, primary, standby = await routed(primary_at=100, standby_at=100)
    primary.up = False
    with read_scope(after=150) as scope:  # a position it cannot reach: stale is all there is
        assert await db.read(served_by) == "s0"
    assert scope.staleness_s is not None and scope.staleness_s >= 0
    with pytest.raises(DatabaseUnavailable):
        await db.run_in_transaction(served_by)
    standby.up = False
    await db.poll()
    with pytest.raises(DatabaseUnavailable):
        await db.read(served_by)
    primary.up = standby.up = True
    await db.poll()
    with read_scope() as scope:
        assert await db.read(served_by) == "s0"
    assert scope.staleness_s is None and db.primary_up


async def test_a_primary_a_poll_missed_still_serves_a_read_no_standby_can() -> None:
    """A poll that timed out under load marks the primary down; with the standby gone too, ask the primary anyway."""
    db, primary, standby = await routed()
    primary.up = standby.up = False
    await db.poll()
    primary.up = True  # back (or never gone), and the watch has not polled since
    with read_scope() as scope:
        assert await db.read(served_by) == "primary"
    assert scope.staleness_s is None, "the primary's answer is not stale"


async def test_a_promoted_standby_takes_no_reads() -> None:
    db, _primary, standby = await routed()
    standby.primary = True  # no longer in recovery
    await db.poll()
    assert db.report()[0]["status"] == "down" and await db.read(served_by) == "primary"


def test_a_session_position_lasts_its_time_keeps_the_newest_and_the_memory_is_bounded() -> None:
    now = [0.0]
    positions = SessionPositions(ttl_s=10, capacity=2, clock=lambda: now[0])
    positions.remember("a", 5)
    positions.remember("a", 3)  # an older answer arriving late does not move it back
    assert positions.position("a") == 5
    positions.remember("b", 1)
    positions.remember("c", 1)  # over capacity: the least recently written goes
    assert positions.position("a") is None and len(positions) == 2
    now[0] = 11
    assert positions.position("b") is None


class FakeShard:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Any]]] = []
        self.store = SessionPositions(ttl_s=60)

        shard = self

        class Method:
            def __init__(self, name: str) -> None:
                self.name = name

            def remote(self, argument: list[Any]) -> Awaitable[Any]:
                shard.calls.append((self.name, argument))
                return shard.answer(self.name, argument)

        self.positions = Method("positions")
        self.remember = Method("remember")

    async def answer(self, name: str, argument: list[Any]) -> Any:
        if name == "remember":
            for session, position in argument:
                self.store.remember(session, position)
            return None
        return [self.store.position(session) for session in argument]


async def test_replicas_share_positions_through_the_ledger_in_one_call_per_loop_turn() -> None:
    shard = FakeShard()
    writer = SharedPositions(SessionPositions(ttl_s=60), [shard])
    reader = SharedPositions(SessionPositions(ttl_s=60), [shard])
    await writer.remember("sid:1", 42)
    assert await reader.position("sid:1") == 42  # another replica's write, through the shard
    assert await reader.position("sid:1", shared=False) is None  # its own memory has none
    shard.calls.clear()
    found = await asyncio.gather(*(reader.position(f"sid:{n}") for n in range(20)))
    assert found[1] == 42 and found.count(None) == 19
    assert [name for name, _ in shard.calls] == ["positions"] and len(shard.calls[0][1]) == 20


async def test_a_silent_ledger_leaves_the_replica_its_own_memory() -> None:
    class Broken:
        class positions:
            @staticmethod
            async def remote(argument: list[str]) -> list[int | None]:
                raise RuntimeError("actor died")

        remember = positions

    shared = SharedPositions(SessionPositions(ttl_s=60), [Broken()])
    await shared.remember("sid:1", 7)  # does not raise: the write is done
    assert await shared.position("sid:1") == 7


class Service:
    @consistent
    async def write(self, value: str) -> str:
        scope = current_scope()
        if scope is not None:
            scope.wrote(99)
        return value


async def test_a_service_call_runs_in_its_callers_scope_only_when_asked() -> None:
    service = Service()
    assert await service.write("plain") == "plain"
    answered: Any = await service.write("scoped", **{CONSISTENCY_ARGUMENT: ReadAfter(10)})
    assert answered == Consistent("scoped", committed=99, staleness_s=None)


def test_replica_urls_keep_only_the_address_and_each_service_reads_them_as_its_own_role() -> None:
    from pydantic import ValidationError

    from strata.actors.postgres import replica_dsn, service_dsn
    from strata.schemas import Settings

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url="postgresql://admin:secret@db.internal:5432/strata",
        database_replica_urls=["postgresql://someone:leaked@replica-1.internal:5433/strata?sslmode=require"],
        secret_key="k" * 32,
    )
    (url,) = settings.database_replica_urls
    assert url == "postgresql://replica-1.internal:5433/strata?sslmode=require"  # no credentials travel on
    primary, replica = service_dsn(settings, "data"), replica_dsn(settings, "data", url)
    assert replica.split("@")[0] == primary.split("@")[0]  # the service's role and password
    assert replica.split("@")[1] == "replica-1.internal:5433/strata?sslmode=require"
    with pytest.raises(ValidationError):
        Settings(_env_file=None, database_replica_urls=["mysql://replica/strata"])  # type: ignore[call-arg]


def test_a_standby_is_named_by_its_address_alone() -> None:
    from strata.actors.postgres._routing import standby_name

    assert standby_name("postgresql://127.0.0.1:20728/strata", 0) == "127.0.0.1:20728"
    assert standby_name("postgresql://u:p@replica.internal/strata", 1) == "replica.internal:5432"
    assert standby_name("postgresql://[::1]:5433/strata", 2) == "[::1]:5433"
