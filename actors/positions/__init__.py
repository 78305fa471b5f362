"""Where each session's newest write stands, shared by every gateway replica (read-your-writes without the token).

- :class:`SessionPositions`: the newest commit position per session, for a while, bounded in size (no Ray).
- :class:`PositionLedger` (actor): one shard of them; :func:`ensure_position_ledgers` finds or creates the shards.
- :class:`SharedPositions`: a gateway replica's view: its own memory, and the shards' for sessions whose writes
  another replica answered; calls to the shards are batched per event-loop turn.
"""

from strata.actors.positions._ledger import (
    LEDGER_SHARDS,
    PositionLedger,
    SessionPositions,
    SharedPositions,
    ensure_position_ledgers,
    ledger_name,
)

__all__ = [
    "LEDGER_SHARDS",
    "PositionLedger",
    "SessionPositions",
    "SharedPositions",
    "ensure_position_ledgers",
    "ledger_name",
]
