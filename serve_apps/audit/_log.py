"""The audit log's effect: one row per domain event (who, what, when, subject, request id)."""

from __future__ import annotations

from typing import Any

import asyncpg

from strata.schemas.events import CloudEvent


async def record_audit_event(conn: asyncpg.Connection, event: CloudEvent[Any]) -> None:
    """Insert the audit row of ``event`` (a duplicate id is ignored: the audit log holds each event once)."""
    await conn.execute(
        "INSERT INTO audit.log (event_id, type, source, subject, actor, request_id, occurred_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING",
        event.id,
        event.type,
        event.source,
        event.subject,
        event.actor,
        event.requestid,
        event.time,
    )
