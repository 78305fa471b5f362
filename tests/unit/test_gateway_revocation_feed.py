"""The revocation feed fails closed: its state machine on an injected clock, the feed over a fake consumer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import OffsetAndTimestamp, TopicPartition

from strata.schemas import Settings
from strata.schemas.events import USER_DISABLED, UserDisabled, encode, new_event
from strata.serve_apps.gateway._revocations import (
    TOPICS,
    FeedProgress,
    FeedState,
    RevocationFeed,
    RevocationFeedUnavailable,
    Revocations,
)
from strata.serve_apps.gateway._tokens import AccessClaims

STALE_AFTER_S = 10.0
SETTINGS = Settings(_env_file=None, revocation_feed_stale_after_s=STALE_AFTER_S)
TP = TopicPartition(TOPICS[1], 0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_new_feed_is_catching_up_and_refuses_until_it_reaches_the_end_offsets_seen_at_start() -> None:
    clock = Clock()
    progress = FeedProgress(STALE_AFTER_S, clock)
    assert progress.state is FeedState.CATCHING_UP
    progress.heard({TP: 0})  # the broker answers, but the end offsets are not known yet
    assert progress.state is FeedState.CATCHING_UP
    progress.aim_at({TP: 3})
    progress.heard({TP: 2})
    assert progress.state is FeedState.CATCHING_UP
    with pytest.raises(RevocationFeedUnavailable) as caught:
        progress.check_current()
    assert caught.value.status == 503 and caught.value.retry_after is not None and caught.value.retry_after >= 1
    progress.aim_at({TP: 99})  # later end offsets do not move the target: only those seen at start count
    progress.heard({TP: 3})
    assert progress.state is FeedState.CURRENT
    progress.check_current()


async def test_a_request_waits_for_a_catch_up_in_progress_and_gives_up_at_its_bound() -> None:
    progress = FeedProgress(STALE_AFTER_S, Clock())
    progress.aim_at({TP: 3})
    assert await progress.wait_caught_up(0.01) is False  # nothing read yet: the wait ends at its bound
    waiter = asyncio.create_task(progress.wait_caught_up(30.0))
    await asyncio.sleep(0)
    progress.heard({TP: 2})
    await asyncio.sleep(0)
    assert not waiter.done()
    progress.heard({TP: 3})
    assert await waiter is True  # woken by the catch-up itself, long before its bound
    assert await progress.wait_caught_up(0.0) is True


def test_a_feed_that_stops_hearing_from_kafka_goes_stale_refuses_and_fails_the_health_check() -> None:
    clock = Clock()
    progress = FeedProgress(STALE_AFTER_S, clock)
    progress.aim_at({TP: 0})
    progress.heard({TP: 0})
    clock.now += STALE_AFTER_S
    assert progress.state is FeedState.CURRENT and progress.health_problem() is None
    clock.now += 0.5
    assert progress.state is FeedState.STALE
    assert progress.health_problem() is not None
    with pytest.raises(RevocationFeedUnavailable, match="lost its revocation feed"):
        progress.check_current()
    progress.heard({})  # Kafka is back: no catching up a second time
    assert progress.state is FeedState.CURRENT and progress.health_problem() is None


def test_a_feed_catching_up_refuses_but_passes_the_health_check_however_long_it_takes() -> None:
    """A replacement would only catch up again; with Kafka down, Serve would replace every replica in a loop."""
    clock = Clock()
    progress = FeedProgress(STALE_AFTER_S, clock)
    clock.now += 10 * STALE_AFTER_S
    assert progress.state is FeedState.CATCHING_UP and progress.health_problem() is None
    progress.aim_at({TP: 5})
    progress.heard({TP: 1})
    clock.now += 10 * STALE_AFTER_S
    assert progress.state is FeedState.CATCHING_UP and progress.health_problem() is None


class FakeBroker:
    """One partition of the users topic holding ``backlog`` events; ``up`` says whether it answers."""

    def __init__(self, backlog: list[bytes]) -> None:
        self.log = list(backlog)
        self.up = True
        self.fetches = 0
        self.seen: list[tuple[FeedState, int]] = []
        """(the feed's state, events it had applied) at each fetch."""


class FakeConsumer:
    """The part of AIOKafkaConsumer the feed uses: one record per fetch, and a poll timestamp per response."""

    def __init__(self, broker: FakeBroker, feed: RevocationFeed) -> None:
        self._broker = broker
        self._feed = feed
        self._position = 0
        self._polled: int | None = None

    async def start(self) -> None:
        if not self._broker.up:
            raise KafkaConnectionError("broker down")

    async def stop(self) -> None:
        return None

    def assign(self, partitions: list[TopicPartition]) -> None:
        assert partitions == [TP]

    async def offsets_for_times(self, times: dict[TopicPartition, int]) -> dict[TopicPartition, OffsetAndTimestamp]:
        return {TP: OffsetAndTimestamp(0, 0)}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._position = offset

    async def seek_to_end(self, tp: TopicPartition) -> None:
        self._position = len(self._broker.log)

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {TP: len(self._broker.log)}

    async def position(self, tp: TopicPartition) -> int:
        return self._position

    def last_poll_timestamp(self, tp: TopicPartition) -> int | None:
        return self._polled

    async def getmany(self, timeout_ms: int) -> dict[TopicPartition, list[Any]]:
        await asyncio.sleep(0)
        if not self._broker.up:
            return {}  # as aiokafka does while it reconnects behind the scenes
        self._broker.fetches += 1
        self._broker.seen.append((self._feed.progress.state, self._feed.applied))
        self._polled = self._broker.fetches
        if self._position >= len(self._broker.log):
            return {}
        record = _Record(self._broker.log[self._position])
        self._position += 1
        return {TP: [record]}


class _Record:
    def __init__(self, value: bytes) -> None:
        self.topic = TP.topic
        self.value = value


class FakeFeed(RevocationFeed):
    def __init__(self, broker: FakeBroker, revocations: Revocations, clock: Callable[[], float]) -> None:
        super().__init__(SETTINGS, revocations, clock)
        self._broker = broker

    async def _partitions(self) -> list[TopicPartition]:
        if not self._broker.up:
            raise KafkaConnectionError("broker down")
        return [TP]

    def _consumer(self) -> Any:
        return FakeConsumer(self._broker, self)


def _disabled(user_id: str) -> bytes:
    return encode(new_event(USER_DISABLED, UserDisabled(user_id=user_id), subject=user_id, key=user_id))


async def _until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never: {what}")


def _claims(user: str) -> AccessClaims:
    return AccessClaims(user, ("member",), 1, None, "jti", 1, 10**10)


async def test_the_feed_vouches_for_tokens_only_once_it_has_applied_the_backlog_then_fails_closed_without_kafka() -> (
    None
):
    clock = Clock()
    backlog = [_disabled(f"user-{n}") for n in range(3)]
    broker = FakeBroker(backlog)
    revocations = Revocations(horizon_s=400, clock=lambda: 0.0)
    feed = FakeFeed(broker, revocations, clock)
    feed.start()
    try:
        await _until(lambda: feed.progress.state is FeedState.CURRENT, "caught up")
        assert feed.applied == len(backlog)
        assert all(state is FeedState.CATCHING_UP for state, applied in broker.seen if applied < len(backlog))
        assert all(revocations.refusal(_claims(f"user-{n}")) is not None for n in range(3))

        broker.up = False
        clock.now += STALE_AFTER_S + 1
        await _until(lambda: feed.progress.state is FeedState.STALE, "stale")
        assert feed.progress.health_problem() is not None
        assert feed.running, "the feed keeps trying; the health check and the 503s are what fail"

        broker.up = True
        await _until(lambda: feed.progress.state is FeedState.CURRENT, "current again")
        assert feed.progress.health_problem() is None
    finally:
        await feed.aclose()


async def test_a_feed_that_cannot_reach_kafka_at_start_stays_catching_up() -> None:
    clock = Clock()
    broker = FakeBroker([_disabled("user-1")])
    broker.up = False
    feed = FakeFeed(broker, Revocations(horizon_s=400), clock)
    feed.start()
    try:
        await asyncio.sleep(0.05)
        clock.now += 100 * STALE_AFTER_S
        assert feed.progress.state is FeedState.CATCHING_UP
        with pytest.raises(RevocationFeedUnavailable):
            feed.progress.check_current()
        broker.up = True
        for _ in range(3000):  # the feed retries after its backoff (0.2 s first)
            if feed.progress.state is FeedState.CURRENT:
                break
            await asyncio.sleep(0.01)
        assert feed.progress.state is FeedState.CURRENT
        assert feed.applied == 1
    finally:
        await feed.aclose()
