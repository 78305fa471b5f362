"""Recording the auth service's events: every one is about one account, keyed and subjected by it."""

from __future__ import annotations

import asyncpg
from pydantic import BaseModel

from strata.actors.outbox import record_event
from strata.schemas.events import EventType, new_event


async def record_account_event(
    conn: asyncpg.Connection,
    event: EventType,
    payload: BaseModel,
    *,
    key: str,
    request_id: str | None,
    actor: str | None,
) -> None:
    """Record ``event`` about account ``key`` (a user id, or the stand-in for an unknown email) in this transaction."""
    await record_event(
        conn, new_event(event, payload, subject=f"account/{key}", key=key, request_id=request_id, actor=actor)
    )
