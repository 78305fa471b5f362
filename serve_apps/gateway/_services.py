"""Deployment handles of the services the gateway calls (one hop down), created once per replica."""

from __future__ import annotations

from typing import Any

from ray import serve

_handles: dict[str, Any] = {}


def service(app: str) -> Any:
    """The handle of Serve application ``app`` (auth, users, data, audit)."""
    handle = _handles.get(app)
    if handle is None:
        handle = _handles[app] = serve.get_app_handle(app)
    return handle
