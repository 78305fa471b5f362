"""The auth service as a Serve deployment (an application without an HTTP route, reached by handle)."""

from __future__ import annotations

from ray import serve

from strata.serve_apps._replica import ServiceReplica


@serve.deployment(ray_actor_options={"num_cpus": 0}, health_check_period_s=5, health_check_timeout_s=5)
class AuthService(ServiceReplica):
    """Replica of the auth service; owns schema ``auth`` in PostgreSQL."""

    service = "auth"


app = AuthService.bind()  # type: ignore[attr-defined]  # @serve.deployment adds bind()
