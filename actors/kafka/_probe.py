"""Is the Kafka cluster answering? One bounded metadata round-trip."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient

logger = logging.getLogger(__name__)


async def kafka_unavailable_reason(bootstrap_servers: str, wait_s: float = 5.0) -> str | None:
    """``None`` when the cluster answers a metadata request within ``wait_s``, else why not (one line)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=int(wait_s * 1000))
    try:
        async with asyncio.timeout(wait_s):
            await admin.start()
            await admin.describe_cluster()
        return None
    except Exception as exc:  # noqa: BLE001 - every failure becomes a one-line reason
        text = str(exc).splitlines()[0] if str(exc) else ""
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
