"""Fault injection for tests: slow one replica down, make its health check fail, see which replica served.

Off by default. With ``fault_injection`` on (``STRATA_FAULT_INJECTION=true``,
which the test session sets), every deployment answers three handle methods,
each acting on the one replica that receives the call:

* ``inject_fault(delay_s, fail_health, replica=None)``: from now on this
  replica waits ``delay_s`` seconds at its fault point before doing a request's
  work, and its ``check_health()`` raises while ``fail_health`` is set. Returns
  the replica id.
* ``clear_fault(replica=None)``: back to normal. Returns the replica id.
* ``fault_state()``: ``{"replica", "served", "delay_s", "fail_health",
  "health_failing_since"}``; ``served`` counts requests that passed the fault
  point, ``health_failing_since`` is the wall-clock time of the first failed
  health check since the fault was injected.

A handle call lands on the replica the router picks. To act on a given
replica, pass its id as ``replica``: any other replica receiving the call
changes nothing and answers its own id, so call until the answer is the wanted
id.

The fault point of a service is its database (``FaultyDatabase`` in
:mod:`~strata.serve_apps._faulty_database`, apart so that the gateway loads no
database code, wraps the replica's :class:`~strata.actors.postgres.Database`:
each unit of work passes it once), so a slowed service replica is one whose
PostgreSQL work is slow. The gateway's fault point is ``GET /healthz``. With
fault injection off the methods refuse (:class:`FaultInjectionDisabled`) and nothing is wrapped.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any


class FaultInjectionDisabled(RuntimeError):
    """Fault injection is off (``STRATA_FAULT_INJECTION`` is not set): the call changes nothing."""


class InjectedHealthFailure(RuntimeError):
    """Raised by a replica's health check while a test made it fail."""


def replica_id() -> str:
    """This replica's Serve id (``"local"`` outside a replica)."""
    from ray import serve

    try:
        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # noqa: BLE001 - not inside a replica
        return "local"


class ReplicaFaults:
    """The faults injected into this replica and how many requests passed its fault point."""

    __slots__ = ("delay_s", "enabled", "fail_health", "health_failing_since", "served")

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.delay_s = 0.0
        self.fail_health = False
        self.served = 0
        self.health_failing_since: float | None = None

    def _require_enabled(self) -> None:
        if not self.enabled:
            raise FaultInjectionDisabled("fault injection is off (set STRATA_FAULT_INJECTION=true in tests only)")

    async def passed(self) -> None:
        """The fault point: count the request and wait the injected delay (nothing when off)."""
        if not self.enabled:
            return
        self.served += 1
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)

    def check_health(self) -> None:
        """Raise while a failing health check is injected (the first failure's time is kept)."""
        if self.enabled and self.fail_health:
            if self.health_failing_since is None:
                self.health_failing_since = time.time()
            raise InjectedHealthFailure("health check failing on purpose (fault injection)")

    def inject(self, delay_s: float, fail_health: bool, replica: str | None = None) -> str:
        self._require_enabled()
        me = replica_id()
        if replica is not None and replica != me:
            return me
        if not 0 <= delay_s <= 60:
            raise ValueError(f"delay_s must be between 0 and 60, got {delay_s}")
        self.delay_s = float(delay_s)
        self.fail_health = bool(fail_health)
        self.health_failing_since = None
        return me

    def clear(self, replica: str | None = None) -> str:
        self._require_enabled()
        me = replica_id()
        if replica is not None and replica != me:
            return me
        self.delay_s = 0.0
        self.fail_health = False
        self.health_failing_since = None
        return me

    def state(self) -> dict[str, Any]:
        self._require_enabled()
        return {
            "replica": replica_id(),
            "served": self.served,
            "delay_s": self.delay_s,
            "fail_health": self.fail_health,
            "health_failing_since": self.health_failing_since,
        }


class FaultInjectable:
    """Mixin of a deployment class: the three handle methods. The class sets ``self._faults`` in ``__init__``."""

    _faults: ReplicaFaults

    async def inject_fault(self, delay_s: float = 0.0, fail_health: bool = False, replica: str | None = None) -> str:
        """Slow this replica down by ``delay_s`` per request and/or fail its health checks; its id.

        With ``replica`` set, only that replica acts (any other one answers its own id and changes nothing).
        """
        return self._faults.inject(delay_s, fail_health, replica)

    async def clear_fault(self, replica: str | None = None) -> str:
        """Remove this replica's injected faults (only if it is ``replica``, when given); its id."""
        return self._faults.clear(replica)

    async def fault_state(self) -> dict[str, Any]:
        """This replica's id, injected faults and the requests it served."""
        return self._faults.state()
