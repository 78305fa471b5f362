"""Creating strata's topics with their configuration (idempotent)."""

from __future__ import annotations

import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from strata.actors.kafka._security import ADMIN, client_options
from strata.schemas import Settings

logger = logging.getLogger(__name__)


def dlq_topic(group: str) -> str:
    """The dead-letter topic of consumer group ``group``."""
    return f"strata.dlq.{group}.v1"


def topic_config(settings: Settings) -> dict[str, str]:
    config = {"retention.ms": str(settings.kafka_retention_hours * 3600 * 1000), "cleanup.policy": "delete"}
    if settings.kafka_replication_factor > 1:
        # With acks=all, a write needs this many in-sync copies: one broker lost loses nothing.
        config["min.insync.replicas"] = str(min(2, settings.kafka_replication_factor))
    return config


async def ensure_topics(settings: Settings, names: list[str]) -> list[str]:
    """Create those of ``names`` that do not exist yet; return the ones created."""
    admin = AIOKafkaAdminClient(**client_options(settings, ADMIN), request_timeout_ms=15_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in names if name not in existing]
        if missing:
            topics = [
                NewTopic(
                    name,
                    settings.kafka_partitions,
                    settings.kafka_replication_factor,
                    topic_configs=topic_config(settings),
                )
                for name in missing
            ]
            with contextlib.suppress(TopicAlreadyExistsError):  # another `strata up` won the race
                response = await admin.create_topics(topics, timeout_ms=15_000)
                for name, code, *_ in getattr(response, "topic_errors", []) or getattr(
                    response, "topic_error_codes", []
                ):
                    if code not in (0, TopicAlreadyExistsError.errno):
                        raise RuntimeError(f"creating topic {name} failed with Kafka error code {code}")
            logger.info("created topics %s", missing)
        return missing
    finally:
        await admin.close()
