"""The audit log's route (admins)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from strata.serve_apps.gateway._auth_routes import PROBLEMS
from strata.serve_apps.gateway._services import service

router = APIRouter(tags=["audit"], responses=PROBLEMS)


@router.get("/v1/audit", summary="The audit log, newest first (cursor pages; filters by actor, type, time)")
async def audit(
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    actor: Annotated[str | None, Query(max_length=256)] = None,
    type: Annotated[
        str | None, Query(max_length=128, description="An event type, e.g. strata.data.item.created.v1")
    ] = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    return dict(
        await service("audit").query.remote(
            cursor=cursor, limit=limit, actor=actor, event_type=type, since=since, until=until
        )
    )
