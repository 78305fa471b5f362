"""Whether a replica's event loop still runs: the health check every replica makes, services and gateway alike.

Apart from the service replica's base (:mod:`~strata.serve_apps._replica`) so that the gateway can check its loop
without loading the services' database code.
"""

from __future__ import annotations

import asyncio
import time

# A replica whose event loop cannot run a trivial task this fast is stuck and should leave rotation.
_LOOP_STALL_S = 2.0


async def event_loop_lag() -> float:
    """Seconds it takes this event loop to run a task that does nothing."""
    started = time.monotonic()
    await asyncio.sleep(0)
    return time.monotonic() - started


async def check_event_loop() -> None:
    """Raise when this replica's event loop no longer runs a trivial task within 2 s (the replica is stuck)."""
    lag = await asyncio.wait_for(event_loop_lag(), timeout=_LOOP_STALL_S)
    if lag > _LOOP_STALL_S:
        raise RuntimeError(f"event loop lagging {lag:.1f}s")
