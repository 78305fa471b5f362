"""`strata down` stops exactly what strata started; runs last, since it stops the session's system."""

from __future__ import annotations

import psutil
import pytest

from strata.cluster import down
from strata.cluster._ray import find_processes, temp_dir_for
from strata.cluster._state import State, port_in_use
from tests.conftest import System

pytestmark = [pytest.mark.integration, pytest.mark.last]


def test_down_leaves_no_raylet_gcs_postgres_or_kafka_behind(system: System, ray_driver: None) -> None:
    import ray

    ray.shutdown()  # this test process is a driver of the session's Ray: let go first
    data_dir = system.settings.data_dir.resolve()
    state = State.load(data_dir)
    recorded = {name: c.pids for name, c in state.components.items() if c.procs}
    assert {"postgres", "standby", "kafka", "ray", "front"} <= set(recorded)
    ray_procs = find_processes(temp_dir_for(data_dir), gcs_port=state.ports["ray"])
    names = {psutil.Process(p.pid).name() for p in ray_procs if psutil.pid_exists(p.pid)}
    assert any("raylet" in n for n in names) and any("gcs_server" in n for n in names), names
    assert "haproxy" in names, names  # Serve's HAProxy, started by Serve inside the head: found by its config path
    settings = system.settings
    serve_ports = [settings.serve_port, settings.haproxy_stats_port, settings.haproxy_metrics_port]
    assert all(port_in_use("127.0.0.1", port) for port in [settings.gateway_port, *serve_ports])

    # Ray's daemons, which down must name as stopped. A worker is named by its command line only while it starts
    # (until it takes its ``ray::`` title), and the raylet ends idle ones on its own: one seen here may be retitled
    # or gone when down looks, which stops it as the raylet's child. Workers need only be gone after down.
    daemons = {p.pid for p in find_processes(temp_dir_for(data_dir), gcs_port=state.ports["ray"], daemons_only=True)}
    titles = {p.pid: " ".join(psutil.Process(p.pid).cmdline())[:120] for p in ray_procs if psutil.pid_exists(p.pid)}
    stopped = down(system.settings, echo=lambda _: None)

    must_stop = {pid for pids in recorded.values() for pid in pids} | daemons
    assert must_stop <= set(stopped), {pid: titles.get(pid) for pid in must_stop - set(stopped)}
    all_pids = must_stop | {p.pid for p in ray_procs}
    survivors = [
        pid for pid in all_pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
    assert survivors == [], f"still running after down: {survivors}"
    assert find_processes(temp_dir_for(data_dir), gcs_port=state.ports["ray"]) == []
    assert State.load(data_dir).components == {}
    assert [port for port in [settings.gateway_port, *serve_ports] if port_in_use("127.0.0.1", port)] == []
