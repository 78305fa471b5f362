"""Reads on standbys, writes on the primary: the :class:`RoutedDatabase` backend and the watch it keeps on each standby.

A service whose registry spec reads from replicas gets a :class:`RoutedDatabase` when standbys are configured
(``STRATA_DATABASE_REPLICA_URLS``, or the embedded standbys `strata up` starts). It holds one asyncpg pool for the
primary and one per standby, and routes by method:

* every method but :meth:`~RoutedDatabase.read` goes to the primary; :meth:`~RoutedDatabase.run_in_transaction` also
  adds its commit position to the caller's :class:`~strata.actors.postgres.ReadScope`;
* :meth:`~RoutedDatabase.read` (a read-only unit of work) goes to the standby in rotation with the fewest calls in
  flight whose replay has reached the scope's ``after``. If none has, it waits up to ``replica_read_wait_s`` for
  one to get there, then reads on the primary; an ``after`` past the primary's own position is then taken as the
  primary's position (:meth:`~strata.actors.postgres.ReadScope.clamp`). With no standby in rotation, it reads on the
  primary.

A watch task polls the primary's WAL position and each standby's replay position every ``replica_poll_s``:

* a standby's lag in bytes is the primary's last position less its replay position; its lag in seconds is how long
  ago the primary first stood at a position the standby has not replayed yet (0 when it has replayed all it saw);
* a standby leaves rotation past either bound (``replica_max_lag_bytes``, ``replica_max_lag_s``), and comes back when
  it is within half of both (it has caught up, not just crossed the line again);
* a standby that does not answer is out until it answers again.

With the primary unreachable, reads go on from any standby that answers, and the scope records how stale they may be:
the answer holds every commit older than ``staleness_s`` seconds (the last time the watch saw the primary at a
position the standby has replayed). Writes fail as they would without standbys (:class:`DatabaseUnavailable`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from strata.actors._consistency import current_scope, parse_lsn
from strata.actors._metrics import inc_counter, set_gauge
from strata.actors.postgres._database import AsyncpgPool, Isolation, Row, TransactionFn
from strata.actors.postgres._errors import CommandTimedOut, DatabaseError, DatabaseUnavailable, QueryError

logger = logging.getLogger(__name__)

T = TypeVar("T")

_STANDBY_QUERY = """
SELECT pg_is_in_recovery() AS recovering,
       pg_last_wal_replay_lsn()::text AS replay,
       pg_is_wal_replay_paused() AS paused,
       extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8 AS since_commit_s
"""
_PRIMARY_QUERY = "SELECT pg_current_wal_insert_lsn()::text"
_REPLAY_QUERY = "SELECT pg_last_wal_replay_lsn()::text"
# How often a read waiting for replay asks the standby again (one query per standby at a time, however many wait).
_REPLAY_POLL_S = 0.002
# A recovery conflict cancels a standby's query (SQLSTATE 40001 or 57014 with this text): the read moves on.
_RECOVERY_CONFLICT = "conflict with recovery"


@dataclass(frozen=True, slots=True)
class ReplicaBounds:
    """How stale a standby may be and stay in rotation, and how long a read waits for one to catch up."""

    max_lag_bytes: int = 16 * 1024 * 1024
    max_lag_s: float = 5.0
    read_wait_s: float = 0.05
    poll_s: float = 0.25

    @property
    def history_s(self) -> float:
        """How long the primary's positions are remembered: enough to measure any lag up to twice the bound."""
        return max(10.0, 2 * self.max_lag_s)


class Standby:
    """One standby as a routing database sees it: its pool, what the last poll said, whether it takes reads."""

    __slots__ = (
        "_refresh",
        "error",
        "in_flight",
        "in_rotation",
        "lag_bytes",
        "lag_s",
        "name",
        "paused",
        "pool",
        "replay",
        "since_commit_s",
        "up",
    )

    def __init__(self, name: str, pool: AsyncpgPool) -> None:
        self.name = name
        self.pool = pool
        self.up = False
        self.in_rotation = False
        self.replay: int | None = None
        self.paused = False
        self.lag_bytes: int | None = None
        self.lag_s: float | None = None
        self.since_commit_s: float | None = None
        self.error: str | None = "not polled yet"
        self.in_flight = 0
        self._refresh: asyncio.Task[None] | None = None

    def saw(self, replay: int | None) -> None:
        if replay is not None and (self.replay is None or replay > self.replay):
            self.replay = replay

    def down(self, error: str) -> None:
        self.up = False
        self.in_rotation = False
        self.error = error

    async def wait_replayed(self, position: int, deadline: float) -> bool:
        """Whether this standby's replay reaches ``position`` before ``deadline`` (loop time)."""
        loop = asyncio.get_running_loop()
        while True:
            if self.replay is not None and self.replay >= position:
                return True
            remaining = deadline - loop.time()
            if remaining <= 0 or not self.up:
                return False
            if self._refresh is None or self._refresh.done():
                self._refresh = loop.create_task(self._ask_replay())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._refresh), remaining)
            if self.replay is not None and self.replay >= position:
                return True
            await asyncio.sleep(min(_REPLAY_POLL_S, max(0.0, deadline - loop.time())))

    async def _ask_replay(self) -> None:
        try:
            text = await self.pool.fetchval(_REPLAY_QUERY)
        except DatabaseError as exc:
            self.down(type(exc).__name__)
            return
        self.saw(None if text is None else parse_lsn(text))

    def report(self) -> dict[str, Any]:
        """What operators see of this standby (``/readyz`` detail, `strata status`)."""
        return {
            "name": self.name,
            "status": "down" if not self.up else ("streaming" if self.in_rotation else "lagging"),
            "in_rotation": self.in_rotation,
            "lag_bytes": self.lag_bytes,
            "lag_s": None if self.lag_s is None else round(self.lag_s, 3),
            "replay_paused": self.paused,
            "error": self.error,
        }


class PrimaryHistory:
    """The primary's WAL positions as the watch saw them, with when: the clock that lag and staleness are read on."""

    __slots__ = ("_keep_s", "_samples")

    def __init__(self, keep_s: float) -> None:
        self._keep_s = keep_s
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, at: float, position: int) -> None:
        self._samples.append((at, position))
        while len(self._samples) > 2 and self._samples[1][0] < at - self._keep_s:
            self._samples.popleft()

    @property
    def latest(self) -> int | None:
        return self._samples[-1][1] if self._samples else None

    def lag_s(self, replay: int, now: float) -> float:
        """How long ago the primary first stood at a position past ``replay`` (0: ``replay`` is as new as any seen)."""
        for at, position in self._samples:
            if position > replay:
                return max(0.0, now - at)
        return 0.0

    def covered_since(self, replay: int) -> float | None:
        """The last time the primary stood at or before ``replay``: every commit before it is replayed."""
        covered = None
        for at, position in self._samples:
            if position <= replay:
                covered = at
        return covered


class RoutedDatabase:
    """:class:`~strata.actors.postgres.Database` over a primary pool and standby pools (see the module docstring)."""

    def __init__(
        self,
        primary: AsyncpgPool,
        standbys: Sequence[tuple[str, AsyncpgPool]],
        *,
        bounds: ReplicaBounds,
        service: str,
    ) -> None:
        if not standbys:
            raise ValueError("a routed database needs at least one standby")
        self._primary = primary
        primary.reports_commits = True
        self._standbys = [Standby(name, pool) for name, pool in standbys]
        self._bounds = bounds
        self._service = service
        self._history = PrimaryHistory(bounds.history_s)
        self._primary_up = True
        self._primary_seen: float | None = None
        self._watch: asyncio.Task[None] | None = None

    @property
    def primary(self) -> AsyncpgPool:
        return self._primary

    @property
    def standbys(self) -> list[Standby]:
        return list(self._standbys)

    @property
    def primary_up(self) -> bool:
        return self._primary_up

    # --- lifecycle --------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the pools (no connection yet) and start watching; a first poll runs before this returns."""
        await self._primary.start()
        for standby in self._standbys:
            await standby.pool.start()
        await self.poll()
        if self._watch is None:
            self._watch = asyncio.get_running_loop().create_task(self._watch_forever())

    async def aclose(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        for standby in self._standbys:
            await standby.pool.aclose()
        await self._primary.aclose()

    async def _watch_forever(self) -> None:
        while True:
            await asyncio.sleep(self._bounds.poll_s)
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception:  # the watch must outlive any one bad poll
                logger.exception("polling the standbys of %s failed", self._service)

    async def poll(self) -> None:
        """Sample the primary's position and every standby's state once; update rotation and the lag metrics."""
        await asyncio.gather(self._poll_primary(), *(self._poll_standby(s) for s in self._standbys))
        now = time.monotonic()
        for standby in self._standbys:
            self._place(standby, now)

    async def _poll_primary(self) -> None:
        at = time.monotonic()  # before asking: every commit before this moment is at or before the answer
        try:
            text = await asyncio.wait_for(self._primary.fetchval(_PRIMARY_QUERY), self._poll_timeout)
        except (DatabaseError, TimeoutError) as exc:
            if self._primary_up:
                logger.warning("primary of %s unreachable (%s): reads go on from standbys", self._service, exc)
            self._primary_up = False
            return
        if not self._primary_up:
            logger.info("primary of %s answers again", self._service)
        self._primary_up = True
        self._primary_seen = at
        self._history.add(at, parse_lsn(text))

    @property
    def _poll_timeout(self) -> float:
        return max(1.0, 4 * self._bounds.poll_s)

    async def _poll_standby(self, standby: Standby) -> None:
        try:
            row = await asyncio.wait_for(standby.pool.fetchrow(_STANDBY_QUERY), self._poll_timeout)
        except (DatabaseError, TimeoutError) as exc:
            if standby.up:
                logger.warning("standby %s of %s unreachable (%s)", standby.name, self._service, type(exc).__name__)
            standby.down(type(exc).__name__ if isinstance(exc, DatabaseError) else "timeout")
            return
        assert row is not None
        if not row["recovering"]:
            # Promoted (or never a standby): its writes are not the primary's. Never read from it.
            standby.down("not in recovery: not a standby of the primary")
            return
        standby.up = True
        standby.error = None
        standby.paused = bool(row["paused"])
        standby.since_commit_s = row["since_commit_s"]
        standby.saw(None if row["replay"] is None else parse_lsn(row["replay"]))

    def _place(self, standby: Standby, now: float) -> None:
        latest = self._history.latest
        if standby.up and standby.replay is not None and latest is not None:
            standby.lag_bytes = max(0, latest - standby.replay)
            standby.lag_s = self._history.lag_s(standby.replay, now)
        bounds = self._bounds
        lag_bytes, lag_s = standby.lag_bytes, standby.lag_s
        if not standby.up or lag_bytes is None or lag_s is None:
            standby.in_rotation = False
        elif standby.in_rotation:
            if lag_bytes > bounds.max_lag_bytes or lag_s > bounds.max_lag_s:
                standby.in_rotation = False
                logger.warning(
                    "standby %s leaves read rotation of %s: %d bytes, %.1f s behind",
                    standby.name,
                    self._service,
                    lag_bytes,
                    lag_s,
                )
        elif lag_bytes <= bounds.max_lag_bytes / 2 and lag_s <= bounds.max_lag_s / 2:
            standby.in_rotation = True
            logger.info("standby %s of %s takes reads", standby.name, self._service)
        tags = {"service": self._service, "standby": standby.name}
        if lag_bytes is not None:
            set_gauge("strata_db_replica_lag_bytes", "WAL bytes a standby has still to replay.", lag_bytes, tags)
        if lag_s is not None:
            set_gauge("strata_db_replica_lag_seconds", "How far behind the primary a standby is, seconds.", lag_s, tags)
        set_gauge(
            "strata_db_replica_in_rotation", "1 when a standby takes reads, else 0.", float(standby.in_rotation), tags
        )

    # --- routing ----------------------------------------------------------------------------------------------------

    def _count_read(self, target: str) -> None:
        inc_counter(
            "strata_db_reads_total",
            "Read-only units of work, by where they ran (primary, or a standby's name).",
            {"service": self._service, "target": target},
        )

    def _count_fallback(self, reason: str) -> None:
        inc_counter(
            "strata_db_read_fallbacks_total",
            "Reads that could not go to a standby, by why: no standby in rotation (no-standby), none replayed the"
            " caller's position in time (replay-wait), a standby failed mid-read (standby-error).",
            {"service": self._service, "reason": reason},
        )

    async def _choose(self, after: int | None) -> Standby | None:
        """The standby a read should use, waiting for replay if it must; ``None``: the primary."""
        candidates = [s for s in self._standbys if s.in_rotation]
        if not candidates:
            self._count_fallback("no-standby")
            return None
        if after is not None:
            reached = [s for s in candidates if s.replay is not None and s.replay >= after]
            if not reached:
                return await self._wait_for_replay(candidates, after)
            candidates = reached
        fewest = min(s.in_flight for s in candidates)
        return random.choice([s for s in candidates if s.in_flight == fewest])

    async def _wait_for_replay(self, candidates: list[Standby], after: int) -> Standby | None:
        furthest = max(candidates, key=lambda s: s.replay or 0)
        loop = asyncio.get_running_loop()
        started = loop.time()
        reached = await furthest.wait_replayed(after, started + self._bounds.read_wait_s)
        waited = loop.time() - started
        tags = {"service": self._service, "outcome": "reached" if reached else "timeout"}
        inc_counter("strata_db_replay_waits_total", "Reads that waited for a standby's replay, by outcome.", tags)
        inc_counter("strata_db_replay_wait_seconds_total", "Time reads waited for replay, seconds.", tags, waited)
        if reached:
            return furthest
        self._count_fallback("replay-wait")
        await self._clamp_future(after)
        return None

    async def _clamp_future(self, after: int) -> None:
        """After a replay wait that timed out: if ``after`` is past the primary's own position too, no commit is there
        (a token signed before the database was restored to an earlier point, or replaced), so the caller's scope
        takes the primary's position instead and its answer names a position that exists. One query, only on this
        path: a position the watch already saw the primary reach is real and costs nothing."""
        latest = self._history.latest
        if latest is not None and after <= latest:
            return
        try:
            text = await self._primary.fetchval(_PRIMARY_QUERY)
        except DatabaseError:
            return  # the read that follows on the primary says what is wrong
        primary = parse_lsn(text)
        scope = current_scope()
        if after > primary and scope is not None:
            scope.clamp(primary)
            inc_counter(
                "strata_db_future_positions_total",
                "Reads whose position was past the primary's own (taken as the primary's position).",
                {"service": self._service},
            )

    async def read(self, fn: TransactionFn[T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(conn, *args, **kwargs)`` in a read-only transaction, on a standby when one may serve it."""
        scope = current_scope()
        if self._primary_up:
            standby = await self._choose(scope.after if scope is not None else None)
            if standby is not None:
                try:
                    return await self._read_on(standby, fn, args, kwargs)
                except DatabaseError as exc:
                    if not _standby_trouble(exc):
                        raise
                    standby.down(type(exc).__name__)
                    self._count_fallback("standby-error")
            try:
                result = await self._primary.read(fn, *args, **kwargs)
            except DatabaseUnavailable as exc:
                if isinstance(exc, CommandTimedOut) or not any(s.up for s in self._standbys):
                    raise
                self._primary_up = False  # the watch says when it is back
                logger.warning("primary of %s unreachable during a read: reading from a standby", self._service)
            else:
                self._count_read("primary")
                return result
        return await self._read_degraded(fn, args, kwargs)

    async def _read_on(
        self, standby: Standby, fn: TransactionFn[T], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> T:
        standby.in_flight += 1
        try:
            result = await standby.pool.read(fn, *args, **kwargs)
        finally:
            standby.in_flight -= 1
        self._count_read(standby.name)
        return result

    async def _read_degraded(self, fn: TransactionFn[T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        """The primary is unreachable: any standby that answers serves the read, and the scope says how stale.

        With no standby answering, the primary is asked once all the same (the watch may have been wrong)."""
        last: DatabaseError = DatabaseUnavailable(f"the primary of {self._service} and its standbys are unreachable")
        for standby in sorted(self._standbys, key=lambda s: (not s.up, -(s.replay or 0))):
            try:
                result = await self._read_on(standby, fn, args, kwargs)
            except DatabaseError as exc:
                if not _standby_trouble(exc):
                    raise
                standby.down(type(exc).__name__)
                last = exc
                continue
            scope = current_scope()
            if scope is not None:
                scope.stale(self._staleness(standby))
            return result
        # No standby answers. The primary was last seen down, but a poll that timed out under load says so too:
        # ask it once rather than fail a read it may well serve.
        try:
            result = await self._primary.read(fn, *args, **kwargs)
        except DatabaseUnavailable:
            raise last from None
        self._count_fallback("no-standby")
        self._count_read("primary")
        return result

    def _staleness(self, standby: Standby) -> float:
        """Seconds before now past which this standby may miss commits (everything older it has)."""
        now = time.monotonic()
        covered = self._history.covered_since(standby.replay) if standby.replay is not None else None
        if covered is not None:
            return round(now - covered, 3)
        # Behind every position the watch remembers: its own word on its last replayed commit is all there is.
        return round(max(standby.since_commit_s or 0.0, now - (self._primary_seen or now)), 3)

    # --- the primary ------------------------------------------------------------------------------------------------

    async def fetch(self, query: str, *args: Any) -> list[Row]:
        return await self._primary.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> Row | None:
        return await self._primary.fetchrow(query, *args)

    async def fetch_one(self, query: str, *args: Any) -> Row:
        return await self._primary.fetch_one(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._primary.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        return await self._primary.execute(query, *args)

    async def run_in_transaction(
        self, fn: TransactionFn[T], /, *args: Any, isolation: Isolation = "read_committed", **kwargs: Any
    ) -> T:
        return await self._primary.run_in_transaction(fn, *args, isolation=isolation, **kwargs)

    async def check(self) -> None:
        await self._primary.check()

    def report(self) -> list[dict[str, Any]]:
        """Each standby's state, for readiness."""
        return [standby.report() for standby in self._standbys]

    def __repr__(self) -> str:
        return f"RoutedDatabase({self._service}, standbys={[s.name for s in self._standbys]})"


def _standby_trouble(exc: DatabaseError) -> bool:
    """Whether a read failed because of the standby (gone, or a recovery conflict), not because of the read itself."""
    if isinstance(exc, DatabaseUnavailable):
        return True
    return isinstance(exc, QueryError) and _RECOVERY_CONFLICT in exc.message


def standby_name(dsn: str, index: int) -> str:
    """A standby's name in metrics and reports: its ``host:port`` (never its credentials)."""
    parts = urlsplit(dsn)
    if not parts.hostname:
        return f"standby-{index}"
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{parts.port or 5432}"
