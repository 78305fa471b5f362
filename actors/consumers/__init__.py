"""Kafka consumer groups as Ray actors: apply each event once, commit after the effect, dead-letter poison."""

from strata.actors.consumers._runner import ConsumerRunner, Handler, apply_once, consumer_name, ensure_consumers

__all__ = ["ConsumerRunner", "Handler", "apply_once", "consumer_name", "ensure_consumers"]
