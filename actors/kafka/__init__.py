"""Kafka plumbing shared by strata's processes: probes, topics, consumer lag, dead letters."""

from strata.actors.kafka._dlq import (
    DeadLetter,
    dead_letter_headers,
    list_dead_letters,
    replay_dead_letters,
    replay_group,
)
from strata.actors.kafka._lag import consumer_group_lag, partitions_of
from strata.actors.kafka._probe import kafka_unavailable_reason
from strata.actors.kafka._stop import stop_quietly
from strata.actors.kafka._topics import dlq_topic, ensure_topics, topic_config

__all__ = [
    "DeadLetter",
    "consumer_group_lag",
    "dead_letter_headers",
    "dlq_topic",
    "ensure_topics",
    "kafka_unavailable_reason",
    "list_dead_letters",
    "partitions_of",
    "replay_dead_letters",
    "replay_group",
    "stop_quietly",
    "topic_config",
]
