"""What travels on the one hop from a caller to a service replica, besides the call's own arguments.

Both sides import it: the callers' :class:`~strata.contracts.ServiceClient` and the replicas'
``consistent`` wrapper (:mod:`strata.serve_apps._consistency`). It lives with the contracts, not with the replicas,
so that a caller can speak the hop without loading any server code.

- :class:`ReadAfter` and :class:`Consistent`: a caller's consistency. A typed client called inside a
  :class:`~strata.actors.ReadScope` (the gateway opens one per request) passes the scope's position to the service as
  one extra keyword argument (:data:`CONSISTENCY_ARGUMENT`), and gets the service's answer wrapped in a
  :class:`Consistent`, which also carries the commit position of the call's writes and the staleness of its reads.
  A caller of a deployment handle that passes no :class:`ReadAfter` gets the bare answer.
- :func:`service_handle`: how a caller finds a service's deployment (by the registry, never through its entry).
- :func:`refused_as_unavailable`: what a caller makes of a call Serve refuses (queue full, no replica).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from ray import serve
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle

from strata.schemas import REGISTRY, ServiceUnavailable, service_spec

CONSISTENCY_ARGUMENT = "_strata_consistency"
"""The keyword argument a client adds to a call made inside a scope (never a parameter name of a service call)."""

DEFAULT_RETRY_AFTER_S = 1.0
"""``Retry-After`` of a refused call when Serve's error carries none."""


@dataclass(frozen=True, slots=True)
class ReadAfter:
    """What a caller asks of a call: reads that see at least ``position`` (``None``: any position within the bound)."""

    position: int | None = None


@dataclass(frozen=True, slots=True)
class Consistent:
    """A service's answer with what the caller's scope needs to know of the call."""

    value: Any
    committed: int | None
    staleness_s: float | None
    clamped: int | None = None
    """The primary's position, when the caller's named one past it (see ``ReadScope.clamped``)."""


def service_handle(app: str, deployment: str | None = None) -> DeploymentHandle[Any]:
    """The handle of service ``app``'s deployment (``auth``, ``users``, ``data``, ``audit``), or of one of its
    workers (``deployment``), from inside the cluster: a Serve replica, an actor, or a driver connected to strata's
    Ray (namespace ``strata``)."""
    if app not in _SERVICES:
        raise ValueError(f"unknown service {app!r}; known: {sorted(_SERVICES)}")
    spec = service_spec(app)
    if deployment is not None and deployment not in (spec.deployment, *spec.workers):
        raise ValueError(f"the {app} application has no deployment {deployment!r}")
    return serve.get_deployment_handle(deployment or spec.deployment, app_name=app)


_SERVICES = frozenset(spec.name for spec in REGISTRY if spec.route_prefix is None)
"""Applications reached by handle (the gateway is reached over HTTP)."""


def retry_after_of(exc: BaseException) -> float:
    """Seconds a refused caller should wait: Serve's ``retry_after_s`` when the deployment sets one."""
    value = getattr(exc, "retry_after_s", None)
    if isinstance(value, int | float) and math.isfinite(value) and value > 0:
        return float(value)
    return DEFAULT_RETRY_AFTER_S


@asynccontextmanager
async def refused_as_unavailable(service: str) -> AsyncIterator[None]:
    """Inside it, a handle call that Serve refuses (queue full, no replica) raises ``ServiceUnavailable``."""
    try:
        yield
    except BackPressureError as exc:
        raise ServiceUnavailable(
            f"the {service} service is at capacity; retry later", retry_after=retry_after_of(exc)
        ) from exc
    except DeploymentUnavailableError as exc:
        raise ServiceUnavailable(
            f"the {service} service is unavailable; retry later", retry_after=DEFAULT_RETRY_AFTER_S
        ) from exc
