"""The audit component as a Serve application without a route: it owns schema ``audit`` and keeps its
consumer group running (the gateway's ``GET /v1/audit`` reads through it in a later change)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ray import serve

from strata.actors.kafka import consumer_group_lag
from strata.serve_apps._entry import service_app
from strata.serve_apps._replica import ServiceReplica
from strata.serve_apps.audit._query import query_audit


@serve.deployment  # its options are in cluster/serve.yaml, the one place for them
class AuditService(ServiceReplica):
    """Replica of the audit component; supervises the ``audit`` consumer group."""

    service = "audit"

    async def consumer_lag(self) -> dict[str, Any]:
        (group,) = self._spec.consumer_groups
        return await consumer_group_lag(self._settings.kafka_bootstrap_servers, group.group, list(group.topics))

    async def query(
        self,
        cursor: str | None = None,
        limit: int = 50,
        actor: str | None = None,
        event_type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> dict[str, Any]:
        """One page of the audit log, newest first (see :func:`query_audit`)."""
        return await self.db.run_in_transaction(
            query_audit, cursor=cursor, limit=limit, actor=actor, event_type=event_type, since=since, until=until
        )


app = service_app(AuditService)
