"""The transactional outbox: record an event with the change it describes; relay actors publish it to Kafka."""

from strata.actors.outbox._backlog import backlog_query, backlog_report, outbox_backlog
from strata.actors.outbox._record import key_hash, notify_channel, record_event
from strata.actors.outbox._relay import OutboxRelay, ensure_relays, prune_sent, relay_name

__all__ = [
    "OutboxRelay",
    "backlog_query",
    "backlog_report",
    "ensure_relays",
    "key_hash",
    "notify_channel",
    "outbox_backlog",
    "prune_sent",
    "record_event",
    "relay_name",
]
