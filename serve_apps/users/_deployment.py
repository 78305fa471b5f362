"""The users service as a Serve deployment (an application without an HTTP route, reached by handle)."""

from __future__ import annotations

from typing import Any

from ray import serve

from strata.actors.consumers import ensure_consumers
from strata.serve_apps._replica import ServiceReplica
from strata.serve_apps.users import _profiles


@serve.deployment(ray_actor_options={"num_cpus": 0}, health_check_period_s=5, health_check_timeout_s=5)
class UsersService(ServiceReplica):
    """Replica of the users service; owns schema ``users`` and keeps its consumer group of auth events running."""

    service = "users"

    async def __init__(self) -> None:  # type: ignore[misc]  # Serve awaits an async constructor
        await super().__init__()
        self._ensure_consumers()

    def _ensure_consumers(self) -> None:
        ensure_consumers(_profiles.GROUP, [_profiles.AUTH_TOPIC], _profiles.apply_auth_event, self.service, members=1)

    async def check_health(self) -> None:
        await super().check_health()
        self._ensure_consumers()

    async def get_profile(self, user_id: str) -> dict[str, Any]:
        return await self.db.run_in_transaction(_profiles.get_or_create_profile, user_id)

    async def role_permissions(self) -> dict[str, list[str]]:
        return await self.db.run_in_transaction(_profiles.role_permissions)


app = UsersService.bind()  # type: ignore[attr-defined]  # @serve.deployment adds bind()
