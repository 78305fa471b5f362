"""Is the Kafka cluster answering? One bounded metadata round-trip."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient

from strata.actors.kafka._security import client_options
from strata.schemas import Settings

logger = logging.getLogger(__name__)


async def kafka_unavailable_reason(settings: Settings, component: str, wait_s: float = 5.0) -> str | None:
    """``None`` when the cluster answers ``component``'s metadata request within ``wait_s``, else why not (one line).

    The probe authenticates as ``component``, so wrong credentials show here as an authentication failure.
    """
    admin = AIOKafkaAdminClient(**client_options(settings, component), request_timeout_ms=int(wait_s * 1000))
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
