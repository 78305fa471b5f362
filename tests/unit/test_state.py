from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from strata.cluster import _state
from strata.cluster._state import Proc, Recorded, State, port_in_use, terminate


def test_state_round_trips(tmp_path: Path) -> None:
    state = State(ports={"postgres": 5433}, components={"kafka": Recorded("kafka", "127.0.0.1:9", [Proc(1, 2.0)])})
    state.save(tmp_path)
    loaded = State.load(tmp_path)
    assert loaded == state


def test_state_json_keeps_its_format(tmp_path: Path) -> None:
    # A state.json as earlier versions wrote it: read as it is, and written back with the same keys.
    written = {
        "ports": {"ray": 6379},
        "components": {
            "ray": {
                "name": "ray",
                "address": "127.0.0.1:6379",
                "procs": [{"pid": 10, "create_time": 1.5}],
                "extra": {"dashboard": "http://127.0.0.1:8265"},
            },
            "gateway": {"name": "gateway", "address": "https://127.0.0.1:8000", "procs": [], "extra": {}},
        },
    }
    (tmp_path / "state.json").write_text(json.dumps(written))
    state = State.load(tmp_path)
    assert state.components["ray"] == Recorded(
        "ray", "127.0.0.1:6379", [Proc(10, 1.5)], {"dashboard": "http://127.0.0.1:8265"}
    )
    state.save(tmp_path)
    assert json.loads((tmp_path / "state.json").read_text()) == written


def test_a_torn_state_file_is_treated_as_empty(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text('{"ports": {"postgres": ')
    assert State.load(tmp_path) == State()


def test_a_chosen_port_is_remembered_and_a_configured_one_wins() -> None:
    state = State()
    first = state.port("kafka", 0)
    assert state.port("kafka", 0) == first
    assert state.port("kafka", 9999) == 9999


def test_a_recycled_pid_is_not_mistaken_for_ours() -> None:
    me = Proc.of(psutil.Process().pid)
    assert me.alive()
    assert not Proc(me.pid, me.create_time - 100).alive()


def test_port_in_use_sees_a_listener() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert port_in_use("127.0.0.1", sock.getsockname()[1])


def test_terminate_stops_a_process_and_its_children() -> None:
    # The parent says its child's pid once the child exists (Popen returns after the fork): the test waits on that
    # line, not on a time, however slowly a loaded machine starts the two interpreters.
    code = (
        "import subprocess, sys, time;"
        " child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        " print(child.pid, flush=True); time.sleep(60)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()  # '' only if the parent died first
        assert line.strip().isdigit(), line
        child = psutil.Process(int(line))
        assert child.ppid() == parent.pid
        terminate([Proc.of(parent.pid)], timeout=5)
        parent.wait(timeout=5)
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    finally:
        parent.kill()
        if parent.stdout is not None:
            parent.stdout.close()


def test_a_chosen_port_lies_outside_the_ephemeral_range_so_no_outgoing_socket_can_take_it() -> None:
    # Ray's gRPC servers and every client socket bind ports from the ephemeral range; a port chosen there for the TLS
    # front was once taken between the choice and the bind.
    ephemeral = _state.ephemeral_ports()
    ports = {_state.free_port() for _ in range(50)}
    assert all(_state._OWN_PORTS_FROM <= port < ephemeral.start for port in ports)


def test_a_port_chosen_for_one_server_is_never_chosen_for_another_before_either_binds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Ports are chosen when the settings are resolved and bound only as each server starts: Kafka's and Ray's metrics
    # agent were once handed the same free port, and the agent, starting second, could not bind it.
    draws = iter([25001, 25001, 25002, 25001, 25002, 25003])
    monkeypatch.setattr(_state.secrets, "choice", lambda _candidates: next(draws))
    monkeypatch.setattr(_state, "port_in_use", lambda _host, _port: False)
    state = _state.State()
    first = state.port("kafka", 0)
    second = state.port("ray_metrics", 0)
    third = state.port("ray_dashboard_agent", 0, besides={25002})
    assert (first, second, third) == (25001, 25002, 25003)
    assert state.port("kafka", 0) == first, "a name keeps the port chosen for it"
