"""Fault injection from tests: find the replicas of a deployment and act on one of them.

The session runs with ``STRATA_FAULT_INJECTION`` on (see ``serve_apps/_faults.py``): each replica of the gateway
and of every service answers ``fault_state``, ``inject_fault`` and ``clear_fault`` through its handle. These are
test internals, not part of any service's contract, so they are called on raw deployment handles here, not
through the typed clients.
"""

from __future__ import annotations

from typing import Any

from strata.contracts import service_handle


def deployment_handle(app: str) -> Any:
    """The deployment that serves ``app``: the gateway, or a service deployment (not its entry)."""
    from ray import serve

    return serve.get_app_handle(app) if app == "gateway" else service_handle(app)


def replica_states(app: str, want: int, attempts: int = 300) -> dict[str, dict[str, Any]]:
    """The fault state of ``want`` distinct replicas of ``app`` (handle calls until each has answered once)."""
    handle = deployment_handle(app)
    seen: dict[str, dict[str, Any]] = {}
    for _ in range(attempts):
        state = handle.fault_state.remote().result(timeout_s=15)
        seen[state["replica"]] = state
        if len(seen) >= want:
            return seen
    raise AssertionError(f"only {len(seen)} replica(s) of {app} answered in {attempts} calls, wanted {want}")


def on_replica(app: str, method: str, replica: str, attempts: int = 300, **kwargs: Any) -> None:
    """Call ``method(replica=replica, **kwargs)`` until ``replica`` itself has answered (others ignore it)."""
    handle = deployment_handle(app)
    for _ in range(attempts):
        if getattr(handle, method).remote(replica=replica, **kwargs).result(timeout_s=15) == replica:
            return
    raise AssertionError(f"replica {replica} of {app} did not receive {method} in {attempts} calls")


def clear_faults(app: str, replicas: int) -> None:
    """Clear the faults of ``replicas`` replicas of ``app``."""
    for replica in replica_states(app, replicas):
        on_replica(app, "clear_fault", replica)
