"""The newest commit position of each session, in each gateway replica and in shard actors every replica shares.

A client that ignores ``Strata-Consistency`` still reads its own writes, through any gateway replica: the replica that
answers a write records the session's position in the session's shard before the answer leaves, and a replica
answering a read that carries no token asks the shard. A position is worth keeping only while a standby in rotation
may not have replayed it (a standby further behind than the lag bound leaves rotation), so entries expire after
twice the bound and the memory stays small: the sessions that wrote in the last few seconds.

Calls from one replica to one shard are batched per event-loop turn (64 concurrent reads cost one call, not 64).
A shard that does not answer within :data:`LEDGER_TIMEOUT_S` leaves the replica with its own memory; a restarted
shard starts empty (sessions whose writes it held read as if they had sent no token, within the lag bound).
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import ray
from ray.actor import ActorHandle

from strata.actors._detached import ensure_detached
from strata.actors._metrics import inc_counter

logger = logging.getLogger(__name__)

LEDGER_SHARDS = 2
LEDGER_TIMEOUT_S = 0.25
K = TypeVar("K")
V = TypeVar("V")


class SessionPositions:
    """The newest commit position of each session, for ``ttl_s`` seconds, at most ``capacity`` sessions (LRU)."""

    __slots__ = ("_capacity", "_clock", "_entries", "_ttl_s")

    def __init__(self, ttl_s: float, capacity: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_s <= 0 or capacity < 1:
            raise ValueError(f"ttl_s={ttl_s} must be positive and capacity={capacity} at least 1")
        self._ttl_s = ttl_s
        self._capacity = capacity
        self._clock = clock
        self._entries: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def remember(self, session: str, position: int) -> None:
        known = self._entries.pop(session, None)
        if known is not None and known[0] > position:
            position = known[0]
        self._entries[session] = (position, self._clock() + self._ttl_s)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def position(self, session: str) -> int | None:
        entry = self._entries.get(session)
        if entry is None:
            return None
        if entry[1] < self._clock():
            del self._entries[session]
            return None
        return entry[0]


class PositionLedger:
    """One shard of the sessions' positions (a detached async actor; its state is the memory above)."""

    def __init__(self, shard: int, ttl_s: float) -> None:
        self._shard = shard
        self._positions = SessionPositions(ttl_s)

    async def remember(self, entries: list[tuple[str, int]]) -> None:
        for session, position in entries:
            self._positions.remember(session, position)

    async def positions(self, sessions: list[str]) -> list[int | None]:
        return [self._positions.position(session) for session in sessions]

    async def size(self) -> int:
        return len(self._positions)


_RemoteLedger = ray.remote(PositionLedger)


def ledger_name(shard: int) -> str:
    return f"strata-positions-{shard}"


def ledger_of(session: str, shards: int) -> int:
    """The shard holding ``session``: a hash every process computes alike."""
    return zlib.crc32(session.encode()) % shards


def ensure_position_ledgers(ttl_s: float, shards: int = LEDGER_SHARDS) -> list[ActorHandle[Any]]:
    """The ledger shards, created (detached, restarted by Ray) where missing. Idempotent."""
    return [ensure_detached(_RemoteLedger, ledger_name(shard), shard, ttl_s) for shard in range(shards)]


class _Batch(Generic[K, V]):
    """Calls made in one event-loop turn, sent as one: ``send(keys)`` answers one value per key."""

    __slots__ = ("_pending", "_send")

    def __init__(self, send: Callable[[list[K]], Awaitable[Sequence[V]]]) -> None:
        self._send = send
        self._pending: list[tuple[K, asyncio.Future[V]]] = []

    def ask(self, key: K) -> asyncio.Future[V]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[V] = loop.create_future()
        if not self._pending:
            loop.call_soon(lambda: loop.create_task(self._flush()))
        self._pending.append((key, future))
        return future

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        try:
            values = await self._send([key for key, _ in batch])
        except Exception as exc:  # noqa: BLE001 - every waiter hears of it (one that gave up waiting is done already)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), value in zip(batch, values, strict=True):
            if not future.done():
                future.set_result(value)


class SharedPositions:
    """A gateway replica's session positions: its own :class:`SessionPositions` and the ledger shards' (with no
    shard, its own alone)."""

    def __init__(self, local: SessionPositions, shards: Sequence[Any] = ()) -> None:
        self.local = local
        self._shards = list(shards)
        self._asks = [_Batch[str, int | None](self._sender(shard)) for shard in self._shards]
        self._tells = [_Batch[tuple[str, int], None](self._teller(shard)) for shard in self._shards]

    def _sender(self, shard: Any) -> Callable[[list[str]], Awaitable[Sequence[int | None]]]:
        async def send(sessions: list[str]) -> Sequence[int | None]:
            answer: list[int | None] = await shard.positions.remote(sessions)
            return answer

        return send

    def _teller(self, shard: Any) -> Callable[[list[tuple[str, int]]], Awaitable[Sequence[None]]]:
        async def tell(entries: list[tuple[str, int]]) -> Sequence[None]:
            await shard.remember.remote(entries)
            return [None] * len(entries)

        return tell

    def _index(self, session: str) -> int:
        return ledger_of(session, len(self._shards))

    async def remember(self, session: str, position: int) -> None:
        """Record a write's position here and in the session's shard (awaited: the next read may go anywhere)."""
        self.local.remember(session, position)
        if not self._shards:
            return
        try:
            await asyncio.wait_for(self._tells[self._index(session)].ask((session, position)), LEDGER_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - the write is done; only other replicas' view of it is lost
            self._missed("remember", exc)

    async def position(self, session: str, *, shared: bool = True) -> int | None:
        """The newest position of the session any replica recorded (``shared=False``, or the shard silent: this
        replica's own)."""
        local = self.local.position(session)
        if not shared or not self._shards:
            return local
        try:
            recorded = await asyncio.wait_for(self._asks[self._index(session)].ask(session), LEDGER_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - this replica's memory is the fallback
            self._missed("position", exc)
            return local
        known = [p for p in (local, recorded) if p is not None]
        return max(known) if known else None

    @staticmethod
    def _missed(call: str, exc: Exception) -> None:
        logger.warning("session position ledger did not answer %s (%s)", call, type(exc).__name__)
        inc_counter(
            "strata_session_ledger_misses_total",
            "Calls to the session position ledger that failed or timed out, by call.",
            {"call": call},
        )
