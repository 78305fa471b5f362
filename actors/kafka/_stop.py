"""Stopping aiokafka clients without mistaking their internal cancellations for ours."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

logger = logging.getLogger(__name__)


async def stop_quietly(client: AIOKafkaConsumer | AIOKafkaProducer) -> None:
    """Stop ``client``; log (do not raise) its errors, and re-raise only a cancellation aimed at this task.

    aiokafka's consumer, stopped soon after it started, awaits an internal task
    it has just cancelled and lets that ``CancelledError`` escape; treating it
    as our own cancellation would end the caller's loop for nothing.
    """
    try:
        await client.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        logger.debug("ignored an internal cancellation while stopping %s", type(client).__name__)
    except Exception as exc:  # noqa: BLE001 - a client that fails to stop is gone anyway
        logger.debug("error while stopping %s: %s", type(client).__name__, exc)
