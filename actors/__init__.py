"""Long-lived Ray actors and what they share: PostgreSQL pools, outbox relays, Kafka consumers, rate-limit state.

Each subpackage is one role; this package's own surface is how every long-lived actor is created
(:func:`ensure_detached`, in namespace :data:`NAMESPACE`) and how its background loop keeps running
(:func:`keep_running` with a :class:`Backoff`), and how any strata process counts something for Prometheus
(:func:`inc_counter`).
"""

from strata.actors._detached import NAMESPACE, ensure_detached
from strata.actors._metrics import inc_counter
from strata.actors._retry import Backoff, keep_running

__all__ = ["NAMESPACE", "Backoff", "ensure_detached", "inc_counter", "keep_running"]
