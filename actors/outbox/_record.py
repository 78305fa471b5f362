"""Recording an event: one row in the service's outbox, inside the caller's transaction."""

from __future__ import annotations

import zlib
from typing import Any

import asyncpg

from strata.actors.postgres import check_service_name
from strata.schemas.events import CloudEvent, encode, event_type


def notify_channel(service: str) -> str:
    """The LISTEN/NOTIFY channel that wakes ``service``'s relays."""
    return f"strata_outbox_{check_service_name(service)}"


def key_hash(key: str) -> int:
    """A stable, non-negative hash of an event key; relay ``k`` of ``n`` owns the keys with ``hash % n == k``."""
    return zlib.crc32(key.encode())


async def record_event(conn: asyncpg.Connection, event: CloudEvent[Any]) -> None:
    """Put ``event`` in its service's outbox, in the transaction ``conn`` is in.

    Call it inside a unit of work (``Database.run_in_transaction``), after the
    change the event describes: the event is published if and only if the
    change commits, and events of one key are published in the order their
    changes committed.
    """
    if not conn.is_in_transaction():
        raise RuntimeError("record_event must run inside the transaction of the change it describes")
    service = check_service_name(event.source.removeprefix("strata/"))
    await conn.execute(
        f"INSERT INTO {service}.outbox (id, topic, key, key_hash, payload) VALUES ($1, $2, $3, $4, $5)",
        event.id,
        event_type(event.type).topic,
        event.partitionkey,
        key_hash(event.partitionkey),
        encode(event),
    )
    # Delivered on commit only; the relays also poll, so a lost notification only delays.
    await conn.execute("SELECT pg_notify($1, '')", notify_channel(service))
