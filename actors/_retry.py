"""The one loop strata's background tasks run in: do the work, and after a failure pause, doubling, and go again.

Used by the outbox relays, the consumer runners and the gateway's revocation
feed. ``CancelledError`` always propagates; every other error is handed to
``on_error`` (which logs it and keeps it for ``stats()``) and retried, so a
background task never dies silently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class Backoff:
    """Consecutive failures and the pause they call for: ``first``, doubling, at most ``cap``."""

    __slots__ = ("cap", "failures", "first")

    def __init__(self, first: float, cap: float) -> None:
        self.first = first
        self.cap = cap
        self.failures = 0

    def failed(self) -> float:
        """Count a failure; the pause before the next try."""
        self.failures += 1
        return float(min(self.first * 2 ** (self.failures - 1), self.cap))

    def succeeded(self) -> None:
        self.failures = 0


async def keep_running(
    step: Callable[[], Awaitable[None]], backoff: Backoff, on_error: Callable[[BaseException, float], None]
) -> None:
    """Run ``step`` again and again; it calls ``backoff.succeeded()`` once it is working."""
    while True:
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported through on_error, then retried
            pause = backoff.failed()
            on_error(exc, pause)
            await asyncio.sleep(pause)
