"""The lifecycle loops (`up`, `down`, `status`) over fake components: order, skipping, rollback, dependents."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

import pytest

from strata.actors.kafka import dlq_topic
from strata.cluster._component import GATEWAY, Echo, PortClaim, Record, StatusRow, recorded_row
from strata.cluster._components import (
    LIFECYCLE,
    KafkaComponent,
    PostgresComponent,
    RayHeadComponent,
    StandbyComponent,
    TlsFrontComponent,
    event_topics,
)
from strata.cluster._errors import PortInUse
from strata.cluster._lifecycle import check_before_start, reap_stale, start_components, stop_components
from strata.cluster._state import Proc, Recorded, State
from strata.cluster._status import status_rows
from strata.schemas import consumer_groups
from strata.schemas.events import topics

LIVE = Proc.of(os.getpid())
DEAD = Proc(LIVE.pid, LIVE.create_time - 100)  # this pid, but another process's start time: not alive


@dataclass
class FakeComponent:
    """Writes what the loops ask of it to a shared log."""

    name: str
    log: list[str]
    depends_on: tuple[str, ...] = ()
    serves_gateway: bool = False
    standalone: bool = True
    external: bool = False
    fails_after_recording: bool = False
    claims: list[PortClaim] = field(default_factory=list)

    def applies(self) -> bool:
        return not self.external

    def ports(self) -> list[PortClaim]:
        return self.claims

    def preflight(self) -> None:
        self.log.append(f"preflight {self.name}")

    def start(self, record: Record, echo: Echo) -> None:
        self.log.append(f"start {self.name}")
        record(Recorded(self.name, f"{self.name}:1", [LIVE]))
        if self.fails_after_recording:
            raise RuntimeError(f"{self.name} did not become ready")

    def provision(self, echo: Echo) -> None:
        self.log.append(f"provision {self.name}")

    def stop(self, recorded: Recorded | None, echo: Echo) -> list[int]:
        self.log.append(f"stop {self.name}")
        return recorded.pids if recorded else []

    def status(self, recorded: Recorded | None) -> StatusRow | None:
        if self.external:
            return StatusRow(self.name, [], "elsewhere:1", "external")
        return recorded_row(self.name, recorded)


def _running(*names: str) -> State:
    return State(components={name: Recorded(name, f"{name}:1", [LIVE]) for name in names})


def test_up_starts_in_order_skipping_what_runs_and_provisions_every_component() -> None:
    log: list[str] = []
    components = [FakeComponent(n, log) for n in ("a", "b", "c")] + [FakeComponent("d", log, external=True)]
    state = _running("b")
    saves: list[set[str]] = []

    started = start_components(components, state, save=lambda: saves.append(set(state.components)), echo=log.append)

    assert log == ["start a", "provision a", "provision b", "start c", "provision c", "provision d"]
    assert started == ["a", "c"]
    assert set(state.components) == {"a", "b", "c"}
    assert saves == [{"a", "b"}, {"a", "b", "c"}], "each record is saved as soon as it is made"


def test_a_failing_start_stops_exactly_what_this_run_started_in_reverse_order() -> None:
    log: list[str] = []
    components = [
        FakeComponent("a", log),
        FakeComponent("b", log),
        FakeComponent("c", log),
        FakeComponent("d", log, fails_after_recording=True),
        FakeComponent("e", log),
    ]
    state = _running("a")

    with pytest.raises(RuntimeError, match="d did not become ready"):
        start_components(components, state, save=lambda: None, echo=log.append)

    assert log[log.index("start failed; stopping what this run started") + 1 :] == ["stop d", "stop c", "stop b"]
    assert "start e" not in log
    assert set(state.components) == {"a"}, "what ran before this run keeps running, and its record"


def test_a_failure_after_the_last_component_stops_what_was_started_too() -> None:
    log: list[str] = []
    components = [FakeComponent(n, log) for n in ("a", "b")]
    state = _running()

    def gateway_not_ready() -> None:
        raise TimeoutError("not ready")

    with pytest.raises(TimeoutError):
        start_components(components, state, save=lambda: None, echo=log.append, finish=gateway_not_ready)

    assert [line for line in log if line.startswith("stop")] == ["stop b", "stop a"]
    assert state.components == {}


def test_down_stops_every_component_in_reverse_order_and_forgets_them() -> None:
    log: list[str] = []
    components = [
        FakeComponent("a", log),
        FakeComponent("b", log, serves_gateway=True),
        FakeComponent("c", log),
        FakeComponent("d", log, external=True),  # neither recorded nor run by strata: nothing to stop
    ]
    state = _running("a", "b", "c")
    state.components[GATEWAY] = Recorded(GATEWAY, "https://127.0.0.1:8000")

    pids = stop_components(components, state, echo=log.append)

    assert log == ["stop c", "stop b", "stop a"]
    assert pids == [LIVE.pid] * 3
    assert state.components == {}


def test_stopping_one_component_stops_its_dependents_first_and_keeps_the_rest() -> None:
    log: list[str] = []
    components = [
        FakeComponent("a", log),
        FakeComponent("b", log),
        FakeComponent("c", log, depends_on=("b",)),
        FakeComponent("d", log, depends_on=("c",)),
    ]
    state = _running("a", "b", "c", "d")
    state.components[GATEWAY] = Recorded(GATEWAY, "https://127.0.0.1:8000")

    stop_components(components, state, only=["b"])

    assert log == ["stop d", "stop c", "stop b"]
    assert set(state.components) == {"a", GATEWAY}, "no component serving the gateway was stopped"


def test_a_component_a_crash_left_half_alive_is_stopped_before_starting_again() -> None:
    log: list[str] = []
    components = [FakeComponent(n, log) for n in ("a", "b", "c")]
    state = _running("a", "c")
    state.components["c"] = Recorded("c", "c:1", [LIVE, DEAD])

    reap_stale(components, state, log.append)

    assert log == ["recovering from an earlier run that did not stop cleanly: c", "stop c"]
    assert set(state.components) == {"a"}


def test_status_gives_one_row_per_component_in_order() -> None:
    log: list[str] = []
    components = [
        FakeComponent("a", log),
        FakeComponent("b", log),
        FakeComponent("c", log),
        FakeComponent("d", log, external=True),
    ]
    state = _running("a")
    state.components["b"] = Recorded("b", "b:1", [DEAD])

    rows = status_rows(components, state)

    assert [(r.name, r.state, r.pids, r.address) for r in rows] == [
        ("a", "running", [LIVE.pid], "a:1"),
        ("b", "dead", [], "b:1"),
        ("c", "stopped", [], ""),
        ("d", "external", [], "elsewhere:1"),
    ]


def test_preflight_checks_only_components_that_do_not_run() -> None:
    log: list[str] = []
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        claim = [PortClaim("A's port", "127.0.0.1", port)]
        components = [FakeComponent("a", log, claims=claim), FakeComponent("b", log)]

        check_before_start(components, _running("a"))
        assert log == ["preflight b"], "a runs: its port is its own, its tools were there"

        with pytest.raises(PortInUse, match=f"port {port} on 127.0.0.1 \\(A's port\\) is already in use"):
            check_before_start(components, _running())


def test_strata_starts_postgres_its_standbys_kafka_ray_then_the_front_which_stops_with_ray() -> None:
    assert (PostgresComponent, StandbyComponent, KafkaComponent, RayHeadComponent, TlsFrontComponent) == LIFECYCLE
    assert TlsFrontComponent.depends_on == (RayHeadComponent.name,)
    assert StandbyComponent.depends_on == (PostgresComponent.name,)  # stopping the primary stops its standbys first


def test_topics_to_create_are_the_catalogue_and_every_groups_dead_letters() -> None:
    expected = set(topics()) | {dlq_topic(group.group) for _, group in consumer_groups()}
    assert event_topics() == sorted(expected)
    assert {"strata.dlq.audit.v1", "strata.dlq.auth.v1", "strata.dlq.users.v1"} <= expected
