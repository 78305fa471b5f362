"""A fetch from another service that backs off when it fails: what the gateway's JWKS and role-permission caches
ask of the auth and users services.

A failed fetch is not tried again before a pause (1 s, doubling up to 30 s),
so a service that is down gets one call a pause from each replica, not one per
request; the caches keep serving what they fetched last meanwhile.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from strata.actors import Backoff

logger = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_FAILURE_BACKOFF_S = 1.0
MAX_FAILURE_BACKOFF_S = 30.0


class BackedOffFetch(Generic[T]):
    """Calls ``source`` when called, and after a failure says how long to wait before the next call."""

    def __init__(
        self, source: Callable[[], Awaitable[T]], what: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._source = source
        self._what = what
        self._clock = clock
        self._backoff = Backoff(first=FIRST_FAILURE_BACKOFF_S, cap=MAX_FAILURE_BACKOFF_S)
        self._retry_at = -float("inf")

    @property
    def waiting(self) -> bool:
        """Whether a failure before asks to wait still: no call now."""
        return self._clock() < self._retry_at

    def retry_after(self) -> float:
        """Seconds until the next call may be made (at least 1, for a ``Retry-After``)."""
        return max(1.0, self._retry_at - self._clock())

    async def __call__(self) -> T | None:
        """The source's answer, or ``None`` when it failed (logged; the next call waits its pause)."""
        try:
            value = await self._source()
        except Exception as exc:  # noqa: BLE001 - any failure of the other service: back off, keep what we have
            pause = self._backoff.failed()
            self._retry_at = self._clock() + pause
            logger.warning("fetching %s failed (%s); next try in %.0fs", self._what, type(exc).__name__, pause)
            return None
        self._backoff.succeeded()
        return value
