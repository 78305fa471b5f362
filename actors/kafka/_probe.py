"""Is the Kafka cluster answering? One bounded metadata round-trip."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import AuthenticationFailedError, SaslAuthenticationFailed

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


async def kafka_refused_credentials(settings: Settings, component: str, wait_s: float = 5.0) -> str | None:
    """The broker's answer when it refuses ``component``'s credentials (one line), else ``None``: it accepts them,
    or the failure is another (nothing listens, no answer in ``wait_s``).

    One connection to the first bootstrap server, authenticated and closed: the admin client's bootstrap reports
    every failure as "Unable to bootstrap", which does not tell a wrong password from a broker still starting.
    """
    options = client_options(settings, component)
    host, _, port = settings.kafka_bootstrap_servers.split(",")[0].strip().rpartition(":")
    try:
        async with asyncio.timeout(wait_s):
            conn = await create_conn(
                host,
                int(port),
                request_timeout_ms=int(wait_s * 1000),
                ssl_context=options.get("ssl_context"),
                security_protocol=options["security_protocol"],
                sasl_mechanism=options.get("sasl_mechanism"),
                sasl_plain_username=options.get("sasl_plain_username"),
                sasl_plain_password=options.get("sasl_plain_password"),
            )
    except (SaslAuthenticationFailed, AuthenticationFailedError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else ""
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    except Exception:  # noqa: BLE001 - not a refusal; the caller's probe says what it is
        return None
    conn.close()
    return None
