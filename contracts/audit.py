"""The audit log's contract: its operations (:class:`AuditOperations`) and its typed client (:class:`AuditClient`).

The deployment (``strata.serve_apps.audit.AuditService``) implements the Protocol, and mypy checks it does; the client
offers it, one hop away. Importing this module loads no server code.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from strata.contracts._client import ServiceClient
from strata.schemas import AuditPage


class AuditOperations(Protocol):
    """The calls of the audit log,
    as its deployment (``AuditService``) implements them and :class:`AuditClient` offers them.

    mypy checks both sides against this Protocol: a signature changed on one side only is a type error.
    """

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
            AuditOperations.query,
            cursor=cursor,
            limit=limit,
            actor=actor,
            event_type=event_type,
            since=since,
            until=until,
        )


def _offers(client: AuditClient) -> AuditOperations:
    """Never called: mypy checks here that the client offers every call of the Protocol, with its signature."""
    return client
