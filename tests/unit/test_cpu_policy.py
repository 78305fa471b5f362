"""The CPU autoscaling policy on synthetic loads: steady, ramp, spike, idle, missing reports; and the CPU meter."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest
from ray.serve._private.common import DeploymentID, ReplicaID
from ray.serve.config import AutoscalingConfig, AutoscalingContext

from strata.serve_apps._autoscaling import (
    CPU_METRIC,
    CpuMeter,
    CpuPolicy,
    CpuPolicyConfig,
    CpuReading,
    DecisionBoard,
    RequestPolicy,
    decide,
    decision_key,
)

CONFIG = CpuPolicyConfig()  # target 0.7, band down to 0.56, up after 3 s, down after 20 s, cooldowns 10 s / 20 s
TICK_S = 1.0


def simulate(
    demand: Callable[[float], float],
    seconds: float,
    *,
    start: int = 1,
    lo: int = 1,
    hi: int = 4,
    config: CpuPolicyConfig = CONFIG,
    reports: Callable[[float, int], int] | None = None,
) -> list[tuple[float, int]]:
    """Ticks every second for ``seconds``: ``demand(t)`` cores of work spread over the replicas (each at most one
    busy core); ``reports(t, n)`` says how many of the ``n`` replicas reported. The count after each tick."""
    replicas, state = start, {}
    history: list[tuple[float, int]] = []
    t = 0.0
    while t < seconds:
        names = tuple(f"r{i}" for i in range(replicas))
        each = min(1.0, demand(t) / replicas)
        reporting = names[: reports(t, replicas)] if reports is not None else names
        reading = CpuReading(t, replicas, names, dict.fromkeys(reporting, each), lo, hi)
        decision = decide(reading, config, state)
        replicas, state = decision.replicas, decision.state
        history.append((t, replicas))
        t += TICK_S
    return history


def changes(history: list[tuple[float, int]]) -> list[tuple[float, int]]:
    out, last = [], history[0][1] if history else None
    for t, n in history[1:]:
        if n != last:
            out.append((t, n))
            last = n
    return out


def test_a_steady_load_near_the_target_holds_its_count() -> None:
    """1.3 cores of work on 2 replicas is 65 % each: between the band (56 %) and the target, for ten minutes."""
    history = simulate(lambda t: 1.3, 600, start=2)
    assert {n for _, n in history} == {2}


def test_a_ramp_scales_up_within_the_delay_and_a_cooldown() -> None:
    """Work grows from 0.3 to 2.7 cores over a minute: each step up comes once the mean has been over 70 % for the
    up delay, and the next not before the cooldown."""
    history = simulate(lambda t: min(2.7, 0.3 + 0.04 * t), 120)
    ups = changes(history)
    assert [n for _, n in ups] == [2, 3, 4], ups
    above = next(t for t, _ in history if 0.3 + 0.04 * t > 0.7)  # the first tick one replica runs above 70 %
    assert ups[0][0] <= above + CONFIG.up_delay_s
    for (t0, _), (t1, _) in itertools.pairwise(ups):
        assert t1 - t0 >= CONFIG.up_cooldown_s
        assert t1 - t0 <= CONFIG.up_cooldown_s + CONFIG.up_delay_s + 20, "a ramp is followed, not waited out"


def test_a_jump_scales_up_by_at_most_the_step() -> None:
    """One replica busy on three cores (threads) asks for five replicas; a step of two gives three."""
    reading = CpuReading(100.0, 1, ("r0",), {"r0": 3.0}, 1, 8)
    decision = decide(reading, CpuPolicyConfig(max_step=2), {"high_since": 0.0})
    assert decision.replicas == 3
    # A saturated single-threaded replica reports one core: the count grows by the target's ratio per step.
    history = simulate(lambda t: 3.5 if t >= 5 else 0.1, 60)
    assert [n for _, n in changes(history)] == [2, 3, 4]


def test_idle_scales_down_to_the_minimum_one_step_at_a_time() -> None:
    history = simulate(lambda t: 0.0, 200, start=4, lo=1)
    downs = changes(history)
    assert [n for _, n in downs] == [3, 2, 1], downs
    assert downs[0][0] >= CONFIG.down_delay_s
    for (t0, _), (t1, _) in itertools.pairwise(downs):
        assert t1 - t0 >= CONFIG.down_cooldown_s
    assert history[-1][1] == 1


def test_a_short_spike_does_not_flap() -> None:
    """Two seconds at full load on one replica every 30 s: shorter than the up delay, so nothing moves."""
    history = simulate(lambda t: 1.0 if t % 30 < 2 else 0.2, 300)
    assert {n for _, n in history} == {1}


def test_a_spike_long_enough_to_scale_up_comes_down_once_after_the_down_delay() -> None:
    """15 s at 1.2 cores, then 0.3: one step up, one step down, and the step down waits out the down delay."""
    moves = changes(simulate(lambda t: 1.2 if 10 <= t < 25 else 0.3, 200))
    assert [n for _, n in moves] == [2, 1], f"flapped: {moves}"
    assert moves[1][0] >= 25 + CONFIG.down_delay_s, moves


def test_missing_reports_never_scale_down() -> None:
    """Idle, but one of three replicas sends nothing: hold; with no report at all: hold."""
    history = simulate(lambda t: 0.0, 200, start=3, reports=lambda t, n: n - 1)
    assert {n for _, n in history} == {3}
    history = simulate(lambda t: 0.0, 200, start=3, reports=lambda t, n: 0)
    assert {n for _, n in history} == {3}


def test_replicas_that_report_a_high_load_scale_up_even_when_others_are_silent() -> None:
    history = simulate(lambda t: 1.9, 60, start=2, reports=lambda t, n: 1)
    assert history[-1][1] > 2


def test_a_scale_down_never_takes_the_rest_above_the_target() -> None:
    """0.9 cores on 2 replicas is 45 % each (below the band), but one replica alone would run at 90 %: hold."""
    history = simulate(lambda t: 0.9, 300, start=2)
    assert {n for _, n in history} == {2}


def test_a_load_one_replica_would_run_near_the_target_keeps_two() -> None:
    """0.68 cores on two replicas (34 % each, what a live run showed right after scaling one to two): one alone would
    run at 68 %, inside the band and a breath from the target. Holding at two keeps the count from flapping (a step
    down to just under the target scaled straight back up in that run)."""
    history = simulate(lambda t: 0.68, 300, start=2)
    assert {n for _, n in history} == {2}


def test_a_scale_down_comes_once_the_rest_would_run_below_the_band() -> None:
    """0.5 cores on two replicas: one alone would run at 50 %, below the band (56 %): one step down, after the delay."""
    moves = changes(simulate(lambda t: 0.5, 300, start=2))
    assert [n for _, n in moves] == [1]
    assert moves[0][0] >= CONFIG.down_delay_s


def test_the_decision_stays_within_the_bounds_and_says_why() -> None:
    reading = CpuReading(100.0, 6, tuple(f"r{i}" for i in range(6)), {}, 1, 4)
    decision = decide(reading, CONFIG, {})
    assert decision.replicas == 4 and "bounds" in decision.reason
    last = decision.state["last_decision"]
    assert last["from"] == 6 and last["to"] == 4 and last["reason"] == decision.reason


@pytest.mark.parametrize(
    "knobs",
    [{"target": 0}, {"target": 1.5}, {"hysteresis": 1}, {"max_step": 0}, {"up_delay_s": -1}, {"down_cooldown_s": -5}],
)
def test_nonsense_knobs_are_refused(knobs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        CpuPolicyConfig(**knobs)


def _context(
    replicas: list[ReplicaID],
    target: int,
    metrics: dict[ReplicaID, float],
    state: dict[str, Any],
    now: float,
    *,
    ongoing: float = 0.0,
    config: AutoscalingConfig | None = None,
) -> Any:
    deployment = DeploymentID(name="Processing", app_name="data")
    return AutoscalingContext(
        deployment_id=deployment,
        deployment_name=deployment.name,
        app_name=deployment.app_name,
        current_num_replicas=len(replicas),
        target_num_replicas=target,
        running_replicas=replicas,
        total_num_requests=ongoing,
        total_queued_requests=0.0,
        aggregated_metrics={CPU_METRIC: metrics},
        raw_metrics=None,
        capacity_adjusted_min_replicas=1,
        capacity_adjusted_max_replicas=3,
        policy_state=state,
        last_scale_up_time=None,
        last_scale_down_time=None,
        current_time=now,
        config=config,
    )


def test_the_policy_reads_serves_context_and_keeps_its_state_between_ticks() -> None:
    """Through Serve's own AutoscalingContext: the policy Serve calls is the decision above."""
    policy = CpuPolicy(up_delay_s=2.0)
    published: list[dict[str, Any]] = []
    policy._board = DecisionBoard(put=lambda key, value: published.append(json.loads(value)))
    replica = ReplicaID("a", DeploymentID(name="Processing", app_name="data"))
    state: dict[str, Any] = {}
    counts, count = [], 1
    for now in (1000.0, 1001.0, 1002.0, 1003.0):  # the second replica is still starting: one runs and reports
        count, state = policy(_context([replica], count, {replica: 0.95}, state, now))
        counts.append(count)
    assert counts == [1, 1, 2, 2]
    assert state["last_decision"]["to"] == 2
    assert published[-1]["to"] == 2 and published[-1]["metric"] == CPU_METRIC and published[-1]["value"] == 0.95


def test_the_board_writes_a_changed_decision_at_once_and_a_held_one_at_most_every_refresh() -> None:
    writes: list[tuple[bytes, dict[str, Any]]] = []
    board = DecisionBoard(refresh_s=5.0, put=lambda key, value: writes.append((key, json.loads(value))))
    for at, to in ((0.0, 1), (1.0, 1), (2.0, 2), (3.0, 2), (7.5, 2)):
        board.publish("data", "Processing", {"at": at, "from": 1, "to": to, "reason": f"to {to}"})
    assert [(w["at"], w["to"]) for _, w in writes] == [(0.0, 1), (2.0, 2), (7.5, 2)]
    assert {key for key, _ in writes} == {decision_key("data", "Processing")}


def test_a_board_that_cannot_write_never_breaks_the_decision() -> None:
    def broken(key: bytes, value: bytes) -> None:
        raise ConnectionError("GCS gone")

    DecisionBoard(put=broken).publish("data", "Processing", {"at": 0.0, "from": 1, "to": 2, "reason": "up"})


def test_the_request_policy_is_serves_own_and_says_what_it_asks() -> None:
    """96 ongoing requests on one replica against a target of 32: Serve's request policy asks three replicas."""
    policy = RequestPolicy()
    published: list[dict[str, Any]] = []
    policy._board = DecisionBoard(put=lambda key, value: published.append(json.loads(value)))
    replica = ReplicaID("g", DeploymentID(name="Gateway", app_name="gateway"))
    config = AutoscalingConfig(min_replicas=1, max_replicas=4, target_ongoing_requests=32)
    desired, state = policy(_context([replica], 1, {}, {}, 1000.0, ongoing=96.0, config=config))
    assert desired == pytest.approx(3.0)
    assert published[-1]["to"] == 3 and published[-1]["metric"] == "ongoing_requests"
    assert "96.0 ongoing requests" in published[-1]["reason"]
    assert published[-1]["last_change"] is None
    # Serve applies the ask after its delay; the next tick sees the new target and records the change.
    policy(_context([replica], 3, {}, state, 1004.0, ongoing=96.0, config=config))
    assert published[-1]["last_change"] == {"at": 1004.0, "from": 1, "to": 3, "reason": state["last_reason"]}


def test_the_meter_reports_cpu_time_over_wall_time() -> None:
    cpu, wall = [10.0], [100.0]
    meter = CpuMeter(cpu_clock=lambda: cpu[0], wall_clock=lambda: wall[0])
    cpu[0], wall[0] = 10.7, 101.0
    assert meter.read() == pytest.approx(0.7)
    cpu[0], wall[0] = 12.7, 102.0  # two busy threads
    assert meter.read() == pytest.approx(2.0)
    assert meter.read() == 0.0, "no time passed"
