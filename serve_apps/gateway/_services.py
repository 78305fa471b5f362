"""Deployment handles of the services the gateway calls (one hop down), created once per replica."""

from __future__ import annotations

from typing import Any

from strata.serve_apps._entry import service_handle
from strata.serve_apps._router import RefusalMappedHandle

_handles: dict[str, Any] = {}


def service(app: str) -> Any:
    """The handle of Serve application ``app`` (auth, users, data, audit).

    A call Serve refuses (the service's queue is full) raises ``ServiceUnavailable``: 503 with ``Retry-After``.
    """
    handle = _handles.get(app)
    if handle is None:
        handle = _handles[app] = RefusalMappedHandle(service_handle(app), app)
    return handle
