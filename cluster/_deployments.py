"""`strata status`'s view of the Serve deployments: a row each, with its replicas, their CPU, the autoscaler's word.

Three sources, each read without joining the cluster as a driver (status stays fast and read-only):

- the dashboard's ``/api/serve/applications/`` (Serve's ``ApplicationDetails``): each deployment's status, config
  (the replica bounds), ``target_num_replicas`` and live replicas with their state, pid and node;
- this machine's processes (psutil): the CPU use of the replicas that run here, sampled over a short window;
- the record strata's autoscaling policies keep in the GCS's internal KV (namespace ``strata-autoscaler``, one key
  ``<app>/<deployment>`` each): the last decision, change or hold, and the metric's value then.

What a source cannot tell shows as ``-``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psutil

from strata.cluster._probes import ray_answers
from strata.cluster._runtime import Runtime
from strata.cluster._serve import application_details

AUTOSCALER_NAMESPACE = b"strata-autoscaler"
"""Where strata's autoscaling policies record their last decision per deployment (key ``<app>/<deployment>``)."""

_STARTING = ("STARTING", "UPDATING", "RECOVERING", "PENDING_MIGRATION")


def autoscaler_records(runtime: Runtime, timeout: float = 3.0) -> dict[tuple[str, str], dict[str, Any]]:
    """``{(app, deployment): record}`` from the GCS's internal KV, through a bare GCS client (no ``ray.init``).

    Empty on any failure (Ray not running, an external ``ray://`` address, a refused token): status shows what it
    cannot see as ``-``.
    """
    address = runtime.ray_address
    if address.startswith("ray://") or not ray_answers(address):
        return {}
    if runtime.ray_auth_token and "RAY_AUTH_TOKEN" not in os.environ:
        # The console script sets these before Ray is imported; a caller from Python may not have.
        os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=runtime.ray_auth_token)
    try:
        from ray._raylet import GcsClient  # type: ignore[attr-defined]  # compiled; its .pyi omits it

        client = GcsClient(address=address)
        keys = client.internal_kv_keys(b"", AUTOSCALER_NAMESPACE, timeout=timeout)
        values = client.internal_kv_multi_get(list(keys), AUTOSCALER_NAMESPACE, timeout=timeout) if keys else {}
    except Exception:  # noqa: BLE001 - status reports what it cannot see
        return {}
    return parse_autoscaler_records(values)


def parse_autoscaler_records(values: Mapping[bytes, bytes]) -> dict[tuple[str, str], dict[str, Any]]:
    """The KV's raw entries as records; a key without ``/`` or a value that is not a JSON object is skipped."""
    records: dict[tuple[str, str], dict[str, Any]] = {}
    for key, value in values.items():
        app, slash, deployment = key.decode(errors="replace").partition("/")
        if not slash:
            continue
        try:
            record = json.loads(value)
        except ValueError:
            continue
        if isinstance(record, dict):
            records[(app, deployment)] = record
    return records


def is_local(node_ip: str | None, local_ips: frozenset[str]) -> bool:
    """Whether a replica on the node at ``node_ip`` runs on this machine (its pid is then one of ours to sample)."""
    return node_ip is not None and node_ip in local_ips


def local_addresses() -> frozenset[str]:
    """This machine's IP addresses (a replica on a node with one of them runs here)."""
    found = {"127.0.0.1", "::1"}
    with contextlib.suppress(OSError):
        for addresses in psutil.net_if_addrs().values():
            found.update(a.address for a in addresses if a.family.name in ("AF_INET", "AF_INET6"))
    return frozenset(found)


def sample_cpu(
    pids: Sequence[int], window_s: float = 0.5, sleep: Callable[[float], None] = time.sleep
) -> dict[int, float]:
    """CPU use of each process over ``window_s``, in percent of one core (a pid that is gone is left out)."""
    processes: dict[int, psutil.Process] = {}
    for pid in set(pids):
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            process.cpu_percent(None)  # starts the window
            processes[pid] = process
    if not processes:
        return {}
    sleep(window_s)
    sampled: dict[int, float] = {}
    for pid, process in processes.items():
        with contextlib.suppress(psutil.Error):
            sampled[pid] = process.cpu_percent(None)
    return sampled


def local_replica_pids(details: Mapping[str, Any], local_ips: frozenset[str]) -> list[int]:
    """The pids of the live replicas, in ``details`` (the dashboard's applications), that run on this machine."""
    pids: list[int] = []
    for app in details.values():
        for deployment in (app.get("deployments") or {}).values():
            for replica in deployment.get("replicas") or []:
                pid = replica.get("pid")
                if isinstance(pid, int) and is_local(replica.get("node_ip"), local_ips):
                    pids.append(pid)
    return pids


def _bounds(config: Mapping[str, Any]) -> tuple[int | None, int | None]:
    autoscaling = config.get("autoscaling_config")
    if isinstance(autoscaling, dict):
        return autoscaling.get("min_replicas"), autoscaling.get("max_replicas")
    count = config.get("num_replicas")
    return (count, count) if isinstance(count, int) else (None, None)


def deployment_rows(
    details: Mapping[str, Any],
    *,
    cpu: Mapping[int, float],
    records: Mapping[tuple[str, str], dict[str, Any]],
    local_ips: frozenset[str],
) -> list[dict[str, Any]]:
    """One row per deployment of ``details`` (the dashboard's applications JSON), in the dashboard's order.

    ``cpu`` maps a pid sampled on this machine to its CPU percent; a replica not in it (another node, gone) has
    ``None``, and so has the deployment's sum when none of its replicas was sampled.
    """
    rows: list[dict[str, Any]] = []
    for app_name, app in details.items():
        for name, deployment in (app.get("deployments") or {}).items():
            replicas = []
            for replica in deployment.get("replicas") or []:
                pid = replica.get("pid")
                local = is_local(replica.get("node_ip"), local_ips)
                replicas.append(
                    {
                        "replica_id": replica.get("replica_id"),
                        "state": replica.get("state", "UNKNOWN"),
                        "pid": pid,
                        "node_ip": replica.get("node_ip"),
                        "cpu_percent": cpu.get(pid) if local and isinstance(pid, int) else None,
                    }
                )
            states = Counter(r["state"] for r in replicas)
            sampled = [r["cpu_percent"] for r in replicas if r["cpu_percent"] is not None]
            low, high = _bounds(deployment.get("deployment_config") or {})
            rows.append(
                {
                    "app": app_name,
                    "deployment": name,
                    "status": deployment.get("status", "UNKNOWN"),
                    "running": states["RUNNING"],
                    "starting": sum(states[s] for s in _STARTING),
                    "stopping": states["STOPPING"],
                    "replica_states": dict(states),
                    "target_replicas": deployment.get("target_num_replicas"),
                    "min_replicas": low,
                    "max_replicas": high,
                    "cpu_percent": round(sum(sampled), 1) if sampled else None,
                    "replicas": replicas,
                    "autoscaler": records.get((app_name, name)),
                }
            )
    return rows


def _ongoing(record: Mapping[str, Any] | None) -> str:
    if not record or record.get("metric") != "ongoing_requests" or record.get("value") is None:
        return "-"
    return f"{float(record['value']):.1f}"


def _decision(record: Mapping[str, Any] | None, now: float) -> str:
    if not record:
        return "-"
    age = f"{max(0.0, now - float(record['at'])):.0f}s ago" if isinstance(record.get("at"), int | float) else "?"
    value = record.get("value")
    metric = f"{record.get('metric', '?')}={value:.2f}" if isinstance(value, int | float) else record.get("metric", "?")
    text = f"{record.get('from', '?')}->{record.get('to', '?')} {age} ({metric}): {record.get('reason', '')}".rstrip()
    change = record.get("last_change")
    if isinstance(change, Mapping) and isinstance(change.get("at"), int | float):
        ago = max(0.0, now - float(change["at"]))
        moved = f"{change.get('from', '?')}->{change.get('to', '?')}"
        text += f"; last change {moved} {ago:.0f}s ago: {change.get('reason', '')}"
    return text


def render_deployments(rows: Sequence[Mapping[str, Any]], now: float) -> list[str]:
    """The table `strata status` prints: one line per deployment, the last decision last (it may be long)."""
    header = (
        f"{'APP':<8} {'DEPLOYMENT':<22} {'STATUS':<12} {'RUN':>3} {'START':>5} {'STOP':>4} {'TARGET':>6}"
        f" {'MIN..MAX':>8} {'CPU%':>6} {'ONGOING':>7} LAST DECISION"
    )
    lines = [header]
    for row in rows:
        low, high = row["min_replicas"], row["max_replicas"]
        bounds = f"{low}..{high}" if low is not None else "-"
        cpu = "-" if row["cpu_percent"] is None else f"{row['cpu_percent']:.1f}"
        target = "-" if row["target_replicas"] is None else str(row["target_replicas"])
        lines.append(
            f"{row['app']:<8} {row['deployment']:<22} {row['status']:<12} {row['running']:>3} {row['starting']:>5}"
            f" {row['stopping']:>4} {target:>6} {bounds:>8} {cpu:>6} {_ongoing(row['autoscaler']):>7}"
            f" {_decision(row['autoscaler'], now)}"
        )
    return lines


def deployment_status(runtime: Runtime, cpu_window_s: float = 0.5) -> list[dict[str, Any]]:
    """Every deployment's row, from the running system (none when Serve does not answer)."""
    details = application_details(runtime.dashboard_url, runtime.ray_auth_token)
    if not details:
        return []
    local_ips = local_addresses()
    cpu = sample_cpu(local_replica_pids(details, local_ips), cpu_window_s)
    return deployment_rows(details, cpu=cpu, records=autoscaler_records(runtime), local_ips=local_ips)
