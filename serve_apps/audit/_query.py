"""Reading the audit log: newest first, keyset pages, filters by actor, type and time."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from strata.schemas import Unprocessable

MAX_LIMIT = 200


def encode_cursor(occurred_at: datetime, event_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([occurred_at.isoformat(), event_id])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        occurred_at, event_id = orjson.loads(raw)
        return datetime.fromisoformat(occurred_at), str(event_id)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise Unprocessable("malformed cursor", code="invalid-cursor") from exc


async def query_audit(
    conn: asyncpg.Connection,
    *,
    cursor: str | None = None,
    limit: int = 50,
    actor: str | None = None,
    event_type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """One page of audit rows matching the filters, newest first, and the cursor of the next page."""
    if not 1 <= limit <= MAX_LIMIT:
        raise Unprocessable(f"limit must be between 1 and {MAX_LIMIT}", code="invalid-limit")
    after = decode_cursor(cursor) if cursor else None
    rows = await conn.fetch(
        "SELECT event_id::text AS event_id, type, source, subject, actor, request_id, occurred_at, recorded_at"
        " FROM audit.log"
        " WHERE ($1::text IS NULL OR actor = $1)"
        " AND ($2::text IS NULL OR type = $2)"
        " AND ($3::timestamptz IS NULL OR occurred_at >= $3)"
        " AND ($4::timestamptz IS NULL OR occurred_at < $4)"
        " AND ($5::timestamptz IS NULL OR (occurred_at, event_id) < ($5, $6::uuid))"
        " ORDER BY occurred_at DESC, event_id DESC LIMIT $7",
        actor,
        event_type,
        since,
        until,
        after[0] if after else None,
        after[1] if after else None,
        limit + 1,
    )
    items = [
        {**dict(r), "occurred_at": r["occurred_at"].isoformat(), "recorded_at": r["recorded_at"].isoformat()}
        for r in rows[:limit]
    ]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor(last["occurred_at"], last["event_id"])
    return {"items": items, "next_cursor": next_cursor}
