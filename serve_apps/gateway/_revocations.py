"""Revocation at the edge, through events: no call per request, effective within seconds.

Every gateway replica reads the auth and users topics itself (no consumer
group: each replica needs every event), starting far enough back to cover every
access token still valid. From them it keeps:

- ended sessions (``sessions_revoked`` with a ``family_id``): tokens of that
  session are refused;
- per user, a *not-before* time (``sessions_revoked`` for all sessions,
  ``password_changed``, ``disabled``, ``deleted``, and ``roles_changed``
  without a ``perm_version``): tokens issued before it are refused, so a
  disabled user or a logout everywhere stops working at the edge as soon as the
  event arrives (the relay publishes within milliseconds of the commit;
  measured end to end in tests/integration/test_identity_http.py);
- per user, a *minimum permissions version* (the ``perm_version`` of
  ``roles_changed``): tokens whose ``pv`` is below it are refused, whenever
  they were issued. The auth service learns roles from the same event,
  asynchronously, so a refresh racing a role change can mint a fresh token
  with the old roles; a not-before time cannot tell it from a good one, its
  ``pv`` can. A role change sets no not-before time: every token minted before
  it has a lower ``pv``, and a token minted with the new roles in the change's
  own second (``iat`` has whole seconds) is good, not refused.

Entries older than an access token's lifetime (plus a minute) are dropped: no
token they could refuse is still valid. For the minimum ``pv`` that holds as
long as the auth service's consumer applies a role change within that minute;
its lag is the ``strata_consumer_lag_messages`` gauge.

The feed fails closed (:class:`FeedProgress`): until it has read up to the end
offsets it saw at start, and whenever it has not heard from Kafka for
``revocation_feed_stale_after_s``, the replica refuses authenticated requests
with 503, and a feed that went stale fails the replica's health check.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from strata.actors import Backoff, keep_running
from strata.actors.kafka import client_options, partitions_of, stop_quietly
from strata.schemas import ServiceUnavailable, Settings, service_spec
from strata.schemas.events import (
    ACCOUNT_PASSWORD_CHANGED,
    SESSIONS_REVOKED,
    USER_DELETED,
    USER_DISABLED,
    USER_ROLES_CHANGED,
    ForeignEvent,
    check_provenance,
    decode,
)
from strata.serve_apps.gateway._tokens import AccessClaims

logger = logging.getLogger(__name__)

TOPICS = service_spec("gateway").reads
"""What the feed reads: exactly the topics the gateway's Kafka principal may read."""
_USER_CUTOFF_TYPES = frozenset(
    e.type for e in (ACCOUNT_PASSWORD_CHANGED, USER_ROLES_CHANGED, USER_DISABLED, USER_DELETED)
)
_MAX_BACKOFF_S = 5.0
_RETRY_AFTER_S = 5.0
"""``Retry-After`` of a request refused while the feed is catching up or stale."""
_RELIST_EVERY_S = 30.0
CATCH_UP_WAIT_S = 2.0
"""How long an authenticated request to a replica still catching up waits for it before the 503."""


class Revocations:
    """Ended sessions and per-user not-before times, learnt from events."""

    def __init__(self, horizon_s: float, clock: Callable[[], float] = time.time) -> None:
        self._horizon_s = horizon_s
        self._clock = clock
        self._sessions: dict[str, float] = {}
        self._not_before: dict[str, float] = {}
        self._min_pv: dict[str, tuple[int, float]] = {}
        """user id -> (lowest ``pv`` still valid, time of the event that set it)."""

    def apply(self, event_type: str, data: dict[str, Any], at: float) -> None:
        user_id = data.get("user_id")
        if event_type == SESSIONS_REVOKED.type:
            family = data.get("family_id")
            if family:
                self._sessions[str(family)] = at
            elif user_id:
                self._cut_off(str(user_id), at)
        elif event_type in _USER_CUTOFF_TYPES and user_id:
            perm_version = data.get("perm_version")
            if (
                event_type == USER_ROLES_CHANGED.type
                and isinstance(perm_version, int)
                and not isinstance(perm_version, bool)
            ):
                self._raise_min_pv(str(user_id), perm_version, at)
            else:
                self._cut_off(str(user_id), at)

    def _raise_min_pv(self, user_id: str, perm_version: int, at: float) -> None:
        # Only upwards: a redelivered older event must not let older roles back in.
        current = self._min_pv.get(user_id)
        if current is None or perm_version > current[0]:
            self._min_pv[user_id] = (perm_version, at)
        elif perm_version == current[0]:
            self._min_pv[user_id] = (perm_version, max(at, current[1]))

    def _cut_off(self, user_id: str, at: float) -> None:
        self._not_before[user_id] = max(at, self._not_before.get(user_id, 0.0))

    def refusal(self, caller: AccessClaims) -> str | None:
        """Why ``caller``'s token no longer counts, or ``None``."""
        if caller.session_id is not None and caller.session_id in self._sessions:
            return "the session has ended"
        not_before = self._not_before.get(caller.user_id)
        # iat has whole seconds, so a token of the cut-off's own second may predate it: refuse it too (safe
        # side). A client cut off (a password change, say) logs in again a second later.
        if not_before is not None and caller.issued_at <= math.floor(not_before):
            return "the token was issued before the account changed"
        min_pv = self._min_pv.get(caller.user_id)
        if min_pv is not None and caller.perm_version < min_pv[0]:
            return "the token carries permissions that have changed since"
        return None

    def prune(self) -> None:
        oldest = self._clock() - self._horizon_s
        self._sessions = {k: v for k, v in self._sessions.items() if v >= oldest}
        self._not_before = {k: v for k, v in self._not_before.items() if v >= oldest}
        self._min_pv = {k: v for k, v in self._min_pv.items() if v[1] >= oldest}

    def __len__(self) -> int:
        return len(self._sessions) + len(self._not_before) + len(self._min_pv)


class FeedState(enum.Enum):
    """Where a replica's revocation feed stands (see :class:`FeedProgress`)."""

    CATCHING_UP = "catching-up"
    CURRENT = "current"
    STALE = "stale"


class RevocationFeedUnavailable(ServiceUnavailable):
    """Authenticated requests are refused: this replica cannot vouch that the token is not revoked."""

    slug = "revocation-feed-unavailable"


class FeedProgress:
    """The fail-closed state machine of a revocation feed, on an injected monotonic clock.

    ``CATCHING_UP`` from start until every partition's position has reached
    the end offset the feed saw when it first reached Kafka (:meth:`aim_at`):
    the replica does not know yet what was revoked before it started.
    ``CURRENT`` while the feed last heard from the broker (:meth:`heard`: a
    fetch response, empty or not) within ``stale_after_s``; ``STALE`` past it.
    Only ``CURRENT`` lets authenticated requests through (:meth:`check_current`).

    The health check fails on ``STALE`` only (:meth:`health_problem`): a
    replica that had a working feed and lost it leaves rotation. A replica
    still catching up keeps passing it: it already refuses what it cannot
    vouch for, answers anonymous routes, and a replacement would only start
    catching up again (with Kafka down, Serve would replace every replica in
    a loop).
    """

    def __init__(self, stale_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._stale_after_s = stale_after_s
        self._clock = clock
        self._targets: dict[TopicPartition, int] | None = None
        self._caught_up = False
        self._last_contact: float | None = None
        self._caught_up_event: asyncio.Event | None = None

    @property
    def aimed(self) -> bool:
        """Whether the end offsets to catch up with are known."""
        return self._targets is not None

    @property
    def caught_up(self) -> bool:
        return self._caught_up

    def aim_at(self, end_offsets: Mapping[TopicPartition, int]) -> None:
        """The end offsets seen at start: what the feed must have read before it vouches for a token (once)."""
        if self._targets is None:
            self._targets = dict(end_offsets)

    def heard(self, positions: Mapping[TopicPartition, int]) -> None:
        """The broker answered; ``positions`` are the feed's positions (only needed while catching up)."""
        self._last_contact = self._clock()
        if not self._caught_up and self._targets is not None:
            self._caught_up = all(positions.get(tp, -1) >= end for tp, end in self._targets.items())
            if self._caught_up and self._caught_up_event is not None:
                self._caught_up_event.set()

    async def wait_caught_up(self, timeout_s: float) -> bool:
        """Wait at most ``timeout_s`` for the catch-up to end; whether it has.

        A new replica's first requests wait for its feed (usually well under a second) instead of being refused.
        """
        if self._caught_up:
            return True
        if self._caught_up_event is None:
            self._caught_up_event = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._caught_up_event.wait(), timeout_s)
        return self._caught_up

    def silence_s(self) -> float | None:
        """Seconds since the broker last answered, or ``None`` if it never has."""
        return None if self._last_contact is None else self._clock() - self._last_contact

    @property
    def state(self) -> FeedState:
        if not self._caught_up:
            return FeedState.CATCHING_UP
        silence = self.silence_s()
        if silence is None or silence > self._stale_after_s:
            return FeedState.STALE
        return FeedState.CURRENT

    def check_current(self) -> None:
        """Raise :class:`RevocationFeedUnavailable` (503, ``Retry-After``) unless the feed is ``CURRENT``."""
        state = self.state
        if state is FeedState.CATCHING_UP:
            raise RevocationFeedUnavailable(
                "this gateway replica is still reading the revocations it missed", retry_after=_RETRY_AFTER_S
            )
        if state is FeedState.STALE:
            raise RevocationFeedUnavailable(
                "this gateway replica has lost its revocation feed", retry_after=_RETRY_AFTER_S
            )

    def health_problem(self) -> str | None:
        """Why the replica must leave rotation (its feed went stale), or ``None``."""
        if self.state is not FeedState.STALE:
            return None
        return f"the revocation feed has not heard from Kafka for {self.silence_s() or 0.0:.1f}s"


class RevocationFeed:
    """The background task of one gateway replica that keeps :class:`Revocations` current."""

    def __init__(
        self, settings: Settings, revocations: Revocations, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._revocations = revocations
        self._horizon_s = settings.access_token_ttl_s + settings.token_leeway_s + 60
        self._clock = clock
        self.progress = FeedProgress(settings.revocation_feed_stale_after_s, clock)
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None
        self.applied = 0
        self.foreign = 0
        """Events ignored because their source or type does not own the topic they came on."""
        self._backoff = Backoff(first=0.2, cap=_MAX_BACKOFF_S)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="revocation-feed")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        await keep_running(self._follow, self._backoff, self._failed)

    def _failed(self, exc: BaseException, pause: float) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        logger.warning("revocation feed: %s; retrying in %.1fs", self.last_error, pause)

    async def _partitions(self) -> list[TopicPartition]:
        admin = AIOKafkaAdminClient(**client_options(self._settings, "gateway"))
        await admin.start()
        try:
            return await partitions_of(admin, list(TOPICS))
        finally:
            await admin.close()

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(**client_options(self._settings, "gateway"), enable_auto_commit=False, group_id=None)

    async def _follow(self) -> None:
        partitions = await self._partitions()
        if not partitions:
            # No topic yet (a fresh cluster): nothing can be revoked. The admin client's answer is the contact.
            self.progress.aim_at({})
            self.progress.heard({})
            await asyncio.sleep(min(5.0, self._settings.revocation_feed_stale_after_s / 2))
            return  # list again
        consumer = self._consumer()
        await consumer.start()
        try:
            consumer.assign(partitions)
            since_ms = int((time.time() - self._horizon_s) * 1000)
            offsets = await consumer.offsets_for_times(dict.fromkeys(partitions, since_ms))
            for tp in partitions:
                found = offsets.get(tp)
                if found is None:
                    await consumer.seek_to_end(tp)
                else:
                    consumer.seek(tp, found.offset)
            if not self.progress.aimed:
                self.progress.aim_at(await consumer.end_offsets(partitions))
            self.progress.heard(await self._positions(consumer, partitions))
            self.last_error = None
            self._backoff.succeeded()
            checked = self._clock()
            polled = {tp: consumer.last_poll_timestamp(tp) for tp in partitions}
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        self._apply(record.topic, record.value)
                # getmany() answers (empty) when the broker is gone too, and aiokafka reconnects behind it
                # forever: only a fetch response, which moves a partition's poll timestamp, proves contact.
                now_polled = {tp: consumer.last_poll_timestamp(tp) for tp in partitions}
                if now_polled != polled:
                    polled = now_polled
                    self.progress.heard(await self._positions(consumer, partitions))
                if self._clock() - checked > _RELIST_EVERY_S:
                    self._revocations.prune()
                    if set(await self._partitions()) != set(partitions):
                        return  # a topic appeared or grew: assign again
                    checked = self._clock()
        finally:
            await stop_quietly(consumer)

    async def _positions(
        self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        if self.progress.caught_up:
            return {}  # only catching up needs them
        return {tp: await consumer.position(tp) for tp in partitions}

    def _apply(self, topic: str, raw: bytes | None) -> None:
        try:
            event = decode(raw or b"")
            check_provenance(topic, event)
        except ForeignEvent as exc:
            self.foreign += 1
            logger.warning("revocation feed: ignored an event not from the owner of %s: %s", topic, exc)
            return
        except ValueError:
            return  # not a strata event: the consumer groups dead-letter it; nothing to learn here
        self._revocations.apply(event.type, dict(event.data), event.time.timestamp())
        self.applied += 1
