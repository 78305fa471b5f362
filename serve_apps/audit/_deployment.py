"""The audit component as a Serve application without a route: it owns schema ``audit``, keeps its consumer group
running (from its registry spec) and answers the gateway's ``GET /v1/audit`` (through
:class:`~strata.serve_apps.audit.AuditClient`)."""

from __future__ import annotations

from datetime import datetime

from ray import serve

from strata.contracts import AuditOperations
from strata.schemas import AuditPage
from strata.serve_apps._entry import service_app
from strata.serve_apps._replica import ServiceReplica
from strata.serve_apps.audit._query import query_audit


@serve.deployment  # its options are in cluster/serve.yaml, the one place for them
class AuditService(ServiceReplica):
    """Replica of the audit component; supervises the ``audit`` consumer group."""

    service = "audit"

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
        """One page of the audit log, newest first (see :func:`query_audit`)."""
        return await self.db.read(
            query_audit, cursor=cursor, limit=limit, actor=actor, event_type=event_type, since=since, until=until
        )


app = service_app(AuditService)


def _implements(service: AuditService) -> AuditOperations:
    """Never called: mypy checks here that the deployment implements every call of its contract, with its signature
    (the class as written: ``@serve.deployment`` leaves what mypy sees of it unchanged)."""
    return service
