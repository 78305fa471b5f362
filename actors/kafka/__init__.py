"""Kafka plumbing shared by strata's processes (later also the outbox relay and consumer actors)."""

from strata.actors.kafka._probe import kafka_unavailable_reason

__all__ = ["kafka_unavailable_reason"]
