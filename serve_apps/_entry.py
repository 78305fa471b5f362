"""How a service is packaged as a Serve application, and how callers reach it.

Each service (auth, users, data) is its own Serve application, so it can be redeployed alone. Its work is done
by its service deployment (``AuthService``, ``UsersService``, ``DataService``), which callers reach through a
deployment handle routed by strata's least-connection request router. The application's *ingress* is a small
``<Service>Entry`` deployment that only holds that handle: once Serve runs its HAProxy ingress, it refuses a custom
request router on any application's ingress deployment (HAProxy balances HTTP ingress traffic itself), even on
applications like these that have no HTTP route. With the entry as ingress, the service deployment is an ordinary
deployment of its application and keeps its router, and a call still makes one hop: caller -> service replica.

Scripts and the gateway reach a service with :func:`strata.contracts.service_handle` (through its typed client),
never through the entry.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle


@serve.deployment(
    num_replicas=1,
    ray_actor_options={"num_cpus": 0},
    health_check_period_s=5,
    health_check_timeout_s=5,
    max_ongoing_requests=8,
)
class ServiceEntry:
    """The ingress of a service application. It holds the service's handle and passes on calls of the service's
    public methods that arrive through the application's handle (``serve.get_app_handle("users")``, as scripts
    written for plain Serve do): they work, with one more hop than :func:`strata.contracts.service_handle`."""

    def __init__(self, service: DeploymentHandle[Any], methods: list[str], *workers: DeploymentHandle[Any]) -> None:
        self._service = service
        self._methods = frozenset(methods)
        self._workers = workers  # bound here so Serve deploys them with the application; called by their own handles

    async def check_health(self) -> None:
        """Nothing to depend on: the service deployment checks its own health."""

    def __getattr__(self, name: str) -> Any:
        methods = self.__dict__.get("_methods", frozenset())
        if name not in methods:
            raise AttributeError(name)
        method = getattr(self.__dict__["_service"], name)

        async def forward(*args: Any, **kwargs: Any) -> Any:
            return await method.remote(*args, **kwargs)

        return forward


_SERVE_HOOKS = frozenset({"check_health", "reconfigure", "record_autoscaling_stats"})


def public_methods(cls: type) -> list[str]:
    """The methods of a service class that callers may invoke (not Serve's hooks, not private ones)."""
    return sorted(
        name
        for name in dir(cls)
        if not name.startswith("_") and name not in _SERVE_HOOKS and callable(getattr(cls, name, None))
    )


def service_app(deployment: Any, *workers: Any) -> Any:
    """The Serve application of ``deployment`` (a ``@serve.deployment`` class), entered through a ``ServiceEntry``,
    with the further deployments ``workers`` (each reached by its own handle: :func:`service_handle`)."""
    methods = public_methods(deployment.func_or_class)
    entry = ServiceEntry.options(name=f"{deployment.name}Entry")  # type: ignore[attr-defined]
    return entry.bind(deployment.bind(), methods, *(worker.bind() for worker in workers))
