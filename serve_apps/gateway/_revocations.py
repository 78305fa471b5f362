"""Revocation at the edge, through events: no call per request, effective within seconds.

Every gateway replica reads the auth and users topics itself (no consumer
group: each replica needs every event), starting far enough back to cover every
access token still valid. From them it keeps:

- ended sessions (``sessions_revoked`` with a ``family_id``): tokens of that
  session are refused;
- per user, a *not-before* time (``sessions_revoked`` for all sessions,
  ``password_changed``, ``roles_changed``, ``disabled``, ``deleted``): tokens
  issued before it are refused, so a disabled user, a logout everywhere or a
  role change stops working at the edge as soon as the event arrives (the relay
  publishes within milliseconds of the commit; measured end to end in
  tests/integration/test_identity_http.py).

Entries older than an access token's lifetime are dropped: no token they could
refuse is still valid.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from strata.actors import Backoff, keep_running
from strata.actors.kafka import client_options, partitions_of, stop_quietly
from strata.schemas import Settings
from strata.schemas.events import decode
from strata.serve_apps.gateway._tokens import AccessClaims

logger = logging.getLogger(__name__)

TOPICS = ("strata.auth.account.v1", "strata.users.user.v1")
_USER_CUTOFF_TYPES = frozenset(
    {
        "strata.auth.account.password_changed.v1",
        "strata.users.user.roles_changed.v1",
        "strata.users.user.disabled.v1",
        "strata.users.user.deleted.v1",
    }
)
_SESSIONS_REVOKED = "strata.auth.account.sessions_revoked.v1"
_MAX_BACKOFF_S = 5.0


class Revocations:
    """Ended sessions and per-user not-before times, learnt from events."""

    def __init__(self, horizon_s: float, clock: Callable[[], float] = time.time) -> None:
        self._horizon_s = horizon_s
        self._clock = clock
        self._sessions: dict[str, float] = {}
        self._not_before: dict[str, float] = {}

    def apply(self, event_type: str, data: dict[str, Any], at: float) -> None:
        user_id = data.get("user_id")
        if event_type == _SESSIONS_REVOKED:
            family = data.get("family_id")
            if family:
                self._sessions[str(family)] = at
            elif user_id:
                self._cut_off(str(user_id), at)
        elif event_type in _USER_CUTOFF_TYPES and user_id:
            self._cut_off(str(user_id), at)

    def _cut_off(self, user_id: str, at: float) -> None:
        self._not_before[user_id] = max(at, self._not_before.get(user_id, 0.0))

    def refusal(self, caller: AccessClaims) -> str | None:
        """Why ``caller``'s token no longer counts, or ``None``."""
        if caller.session_id is not None and caller.session_id in self._sessions:
            return "the session has ended"
        not_before = self._not_before.get(caller.user_id)
        # iat has whole seconds, so a token of the cut-off's own second may predate it: refuse it too (safe
        # side). A client cut off by a role change logs in again a second later.
        if not_before is not None and caller.issued_at <= math.floor(not_before):
            return "the token was issued before the account changed"
        return None

    def prune(self) -> None:
        oldest = self._clock() - self._horizon_s
        self._sessions = {k: v for k, v in self._sessions.items() if v >= oldest}
        self._not_before = {k: v for k, v in self._not_before.items() if v >= oldest}

    def __len__(self) -> int:
        return len(self._sessions) + len(self._not_before)


class RevocationFeed:
    """The background task of one gateway replica that keeps :class:`Revocations` current."""

    def __init__(self, settings: Settings, revocations: Revocations) -> None:
        self._settings = settings
        self._revocations = revocations
        self._horizon_s = settings.access_token_ttl_s + settings.token_leeway_s + 60
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None
        self.applied = 0
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

    async def _follow(self) -> None:
        partitions = await self._partitions()
        consumer = AIOKafkaConsumer(
            **client_options(self._settings, "gateway"), enable_auto_commit=False, group_id=None
        )
        await consumer.start()
        try:
            if partitions:
                consumer.assign(partitions)
                since_ms = int((time.time() - self._horizon_s) * 1000)
                offsets = await consumer.offsets_for_times(dict.fromkeys(partitions, since_ms))
                for tp in partitions:
                    found = offsets.get(tp)
                    if found is None:
                        await consumer.seek_to_end(tp)
                    else:
                        consumer.seek(tp, found.offset)
            self.last_error = None
            self._backoff.succeeded()
            checked = time.monotonic()
            while True:
                if not partitions:
                    await asyncio.sleep(1.0)
                else:
                    batches = await consumer.getmany(timeout_ms=500)
                    for records in batches.values():
                        for record in records:
                            self._apply(record.value)
                if time.monotonic() - checked > 30:
                    self._revocations.prune()
                    if set(await self._partitions()) != set(partitions):
                        return  # a topic appeared or grew: assign again
                    checked = time.monotonic()
        finally:
            await stop_quietly(consumer)

    def _apply(self, raw: bytes | None) -> None:
        try:
            event = decode(raw or b"")
        except ValueError:
            return  # not a strata event: the consumer groups dead-letter it; nothing to learn here
        self._revocations.apply(event.type, dict(event.data), event.time.timestamp())
        self.applied += 1
