"""The audit component as a Serve application without a route: it owns schema ``audit`` and keeps its
consumer group running (the gateway's ``GET /v1/audit`` reads through it in a later change)."""

from __future__ import annotations

from typing import Any

from ray import serve

from strata.actors.consumers import ensure_consumers
from strata.actors.kafka import consumer_group_lag
from strata.serve_apps._replica import ServiceReplica
from strata.serve_apps.audit._log import GROUP, audited_topics, record_audit_event


@serve.deployment(ray_actor_options={"num_cpus": 0}, health_check_period_s=5, health_check_timeout_s=5)
class AuditService(ServiceReplica):
    """Replica of the audit component; supervises the ``audit`` consumer group."""

    service = "audit"
    has_outbox = False

    async def __init__(self) -> None:  # type: ignore[misc]  # Serve awaits an async constructor
        await super().__init__()
        self._ensure_consumers()

    def _ensure_consumers(self) -> None:
        ensure_consumers(GROUP, audited_topics(), record_audit_event, self.service, members=1)

    async def check_health(self) -> None:
        await super().check_health()
        # A runner killed for good (not restarted by Ray) is created again here, within one period.
        self._ensure_consumers()

    async def consumer_lag(self) -> dict[str, Any]:
        return await consumer_group_lag(self._settings.kafka_bootstrap_servers, GROUP, audited_topics())

    async def audit_rows(self, limit: int = 100) -> list[dict[str, Any]]:
        return await self.db.fetch(
            "SELECT event_id::text AS event_id, type, source, subject, actor, request_id, occurred_at"
            " FROM audit.log ORDER BY occurred_at DESC LIMIT $1",
            limit,
        )


app = AuditService.bind()  # type: ignore[attr-defined]  # @serve.deployment adds bind()
