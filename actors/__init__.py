"""Long-lived Ray actors and what they share: PostgreSQL pools, outbox relays, Kafka consumers, rate-limit state.

Each subpackage is one role; this package's own surface is how every long-lived actor is created
(:func:`ensure_detached`, in namespace :data:`NAMESPACE`) and how its background loop keeps running
(:func:`keep_running` with a :class:`Backoff`), how any strata process counts something for Prometheus
(:func:`inc_counter`), and the read scope a call carries its commit positions in (:class:`ReadScope`,
:func:`read_scope`): the database routes reads by it, and callers that hold no database (the gateway, the typed
clients of :mod:`strata.contracts`) carry it too, so it lives here rather than in :mod:`strata.actors.postgres`.
"""

from strata.actors._consistency import (
    InvalidPosition,
    ReadScope,
    current_scope,
    format_lsn,
    parse_lsn,
    read_scope,
)
from strata.actors._detached import NAMESPACE, ensure_detached
from strata.actors._metrics import inc_counter
from strata.actors._retry import Backoff, keep_running

__all__ = [
    "NAMESPACE",
    "Backoff",
    "InvalidPosition",
    "ReadScope",
    "current_scope",
    "ensure_detached",
    "format_lsn",
    "inc_counter",
    "keep_running",
    "parse_lsn",
    "read_scope",
]
