"""The audit log's route (admins)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from strata.schemas import PLAIN_TEXT, AuditPage, Unprocessable
from strata.serve_apps.gateway._deps import AuditDep

# Errors every route may give are added to the OpenAPI document from the routing table (_openapi.py).
router = APIRouter(tags=["audit"])

_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 1, 1, tzinfo=UTC)


def _bounded(name: str, moment: datetime | None) -> datetime | None:
    """``moment`` (naive means UTC) if PostgreSQL can compare it; 422 for dates outside 1970..9998."""
    if moment is None:
        return None
    try:
        aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        if _EARLIEST <= aware.astimezone(UTC) < _LATEST:
            return aware
    except (OverflowError, ValueError):
        pass
    raise Unprocessable(f"{name} must lie between 1970 and 9998", code="invalid-time")


@router.get("/v1/audit", summary="The audit log, newest first (cursor pages; filters by actor, type, time)")
async def audit(
    audit_log: AuditDep,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    actor: Annotated[str | None, Query(max_length=256, pattern=PLAIN_TEXT)] = None,
    type: Annotated[
        str | None,
        Query(
            max_length=128, pattern=PLAIN_TEXT, description="An event type, e.g. strata.data.collection.item_created.v1"
        ),
    ] = None,
    since: Annotated[datetime | None, Query(description="Events at or after this time (no zone: UTC).")] = None,
    until: Annotated[datetime | None, Query(description="Events before this time (no zone: UTC).")] = None,
) -> AuditPage:
    return await audit_log.query(
        cursor=cursor,
        limit=limit,
        actor=actor,
        event_type=type,
        since=_bounded("since", since),
        until=_bounded("until", until),
    )
