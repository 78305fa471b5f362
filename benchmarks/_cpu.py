"""Which processes the CPU went to during a measured run.

The target's processes are those whose command line names one of its markers (its data dir, its Ray temp
dir, its module), and their descendants; each is put in a group (gateway replicas, PostgreSQL, the TLS
front, ...). wrk is a group of its own, and everything else on the machine is "other processes": on a
shared machine that group shows how much of the run someone else took.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable

import psutil

OTHER = "other processes"
DEFAULT = "Ray core, controller, other actors"

Snapshot = dict[int, tuple[float, float, str]]
"""pid -> (create time, CPU seconds so far, group)."""


def group_of(name: str, cmdline: str) -> str:
    """The group of one of the target's processes, from its name and command line."""
    if "ServeReplica:" in cmdline:
        app = cmdline.split("ServeReplica:", 1)[1].split(":", 1)[0]
        return f"{app} replicas"
    if "ProxyActor" in cmdline:
        return "Serve proxy"
    if name == "haproxy" or "haproxy" in cmdline.split(" ", 1)[0]:
        return "TLS front (haproxy)" if "front.cfg" in cmdline else "Serve HAProxy"
    if name.startswith("postgres") or cmdline.startswith("postgres"):
        return "PostgreSQL"
    if name == "java":
        return "Kafka"
    if "uvicorn" in cmdline or "benchmarks.peer.monolith" in cmdline:
        return "uvicorn"
    return DEFAULT


def snapshot(markers: Iterable[str]) -> Snapshot:
    """CPU seconds of every process, each put in its group."""
    markers = [m for m in markers if m]
    info: dict[int, tuple[int, str, str, float, float]] = {}
    for proc in psutil.process_iter(["pid", "ppid", "name", "cmdline", "cpu_times", "create_time"]):
        try:
            times = proc.info["cpu_times"]
            if times is None:
                continue
            cmdline = " ".join(proc.info["cmdline"] or [])
            info[proc.pid] = (
                proc.info["ppid"] or 0,
                proc.info["name"] or "",
                cmdline,
                times.user + times.system,
                proc.info["create_time"] or 0.0,
            )
        except psutil.Error:
            continue
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, *_) in info.items():
        children[ppid].append(pid)
    owned: set[int] = set()
    stack = [pid for pid, (_, _, cmdline, _, _) in info.items() if any(m in cmdline for m in markers)]
    while stack:
        pid = stack.pop()
        if pid not in owned:
            owned.add(pid)
            stack.extend(children.get(pid, []))
    me = os.getpid()
    groups: dict[int, str] = {}

    def owned_group(pid: int) -> str:
        # A process that names nothing of its own (a uvicorn worker started by multiprocessing) is in its parent's.
        if pid not in groups:
            ppid, name, cmdline, _, _ = info[pid]
            group = group_of(name, cmdline)
            if group == DEFAULT and ppid in owned:
                group = owned_group(ppid)
            groups[pid] = group
        return groups[pid]

    result: Snapshot = {}
    for pid, (_, name, _, cpu, created) in info.items():
        if pid == me:
            continue
        if name == "wrk":
            group = "wrk"
        elif pid in owned:
            group = owned_group(pid)
        else:
            group = OTHER
        result[pid] = (created, cpu, group)
    return result


def cpu_by_group(before: Snapshot, after: Snapshot, seconds: float) -> dict[str, float]:
    """Each group's share of the machine between two snapshots, in % of all cores (largest first)."""
    spent: dict[str, float] = defaultdict(float)
    for pid, (created, cpu, group) in after.items():
        earlier = before.get(pid)
        start = earlier[1] if earlier is not None and abs(earlier[0] - created) < 1.0 else 0.0
        spent[group] += max(0.0, cpu - start)
    capacity = max(seconds, 1e-9) * (os.cpu_count() or 1)
    shares = {group: round(secs / capacity * 100, 1) for group, secs in spent.items()}
    return dict(sorted(((g, s) for g, s in shares.items() if s >= 0.5), key=lambda item: -item[1]))
