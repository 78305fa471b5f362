"""The typed client of the audit log: one method per call of :class:`AuditService`, one hop away."""

from __future__ import annotations

from datetime import datetime

from strata.schemas import AuditPage
from strata.serve_apps._client import ServiceClient


class AuditClient(ServiceClient):
    """Reads the audit log (one row per domain event of every service).

    Errors arrive as the service raised them: :class:`~strata.schemas.Unprocessable` (a malformed cursor, a limit
    outside 1..200), :class:`~strata.schemas.ServiceUnavailable` (the service refused the call).
    """

    app = "audit"
    __slots__ = ()

    async def query(
        self,
        *,
        cursor: str | None = None,
        limit: int = 50,
        actor: str | None = None,
        event_type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> AuditPage:
        """One page of entries, newest first; pass its ``next_cursor`` as ``cursor`` for the next one.

        ``actor`` and ``event_type`` keep entries of that actor and event type; ``since`` (inclusive) and ``until``
        (exclusive) bound the time the events occurred (give them a zone).
        """
        return await self._call(
            AuditPage,
            "query",
            cursor=cursor,
            limit=limit,
            actor=actor,
            event_type=event_type,
            since=since,
            until=until,
        )
