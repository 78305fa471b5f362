"""Reading the audit log: newest first, keyset pages, filters by actor, type and time."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from strata.schemas import AuditEntry, AuditPage
from strata.serve_apps._pagination import check_page_limit, decode_cursor, next_page_cursor


async def query_audit(
    conn: asyncpg.Connection,
    *,
    cursor: str | None = None,
    limit: int = 50,
    actor: str | None = None,
    event_type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> AuditPage:
    """One page of audit rows matching the filters, newest first, and the cursor of the next page.

    Keyset pages on ``(occurred_at, event_id)``, descending (:mod:`strata.serve_apps._pagination`); a malformed
    cursor or a limit outside 1..200 is :class:`~strata.schemas.Unprocessable`.
    """
    check_page_limit(limit)
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
        after.moment if after else None,
        after.id if after else None,
        limit + 1,
    )
    items = [
        AuditEntry.model_validate(
            {**dict(r), "occurred_at": r["occurred_at"].isoformat(), "recorded_at": r["recorded_at"].isoformat()}
        )
        for r in rows[:limit]
    ]
    return AuditPage(items=items, next_cursor=next_page_cursor(rows, limit, moment="occurred_at", row_id="event_id"))
