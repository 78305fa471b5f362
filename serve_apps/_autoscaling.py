"""Scaling CPU-bound deployments on CPU: what each replica reports, and the policy that turns reports into a count.

Serve scales on ongoing requests by default. That suits I/O-bound services (a replica waiting on PostgreSQL can hold
many requests), not CPU-bound ones: a replica computing statistics is saturated by one or two requests, and how many
it holds says little about whether another replica would help. A CPU-bound deployment of strata instead:

- measures, in each replica, its process's CPU time over wall time since the last report (:class:`CpuMeter`; 1.0
  is one core busy all the time), and reports it to Serve as ``cpu_utilization`` from ``record_autoscaling_stats``;
- names :class:`CpuPolicy` as its ``autoscaling_config.policy`` (``policy_function:
  strata.serve_apps._autoscaling:CpuPolicy``, knobs in ``policy_kwargs``). Serve's controller calls it on every
  autoscaling tick with the reports averaged over ``look_back_period_s``; it answers a replica count, which Serve
  bounds by ``min_replicas``/``max_replicas``.

The decision itself is :func:`decide`, a pure function of the reports, the current count, the bounds, the time and
the policy's own state (so it is tested on synthetic inputs):

- **Target** ``target`` (0.7): the mean utilisation of the running replicas is compared with it.
- **Up** when the mean has stayed above the target for ``up_delay_s``: to the count that would bring the mean back to
  the target (``ceil(current x mean / target)``), at most ``max_step`` more at once, and not within
  ``up_cooldown_s`` of the last change.
- **Down** when the mean has stayed below the target by the hysteresis band (``target x (1 - hysteresis)``, 0.56 by
  default) for ``down_delay_s``, and the replicas left after the step would still run below the band (so a step
  down never lands where the next tick would step up again): one step at a time (``max_step``), not within
  ``down_cooldown_s`` of the last change. Between the band and the target nothing changes, so a load near 70 %
  holds its count.
- **Missing reports never scale down.** A running replica that sent no report (just started, stuck, or its report
  was lost) makes the policy hold, unless the replicas that did report already ask for more.
- The last decision, with its reason, stays in the state Serve keeps for the policy (``last_decision``), and so
  does the last change of the count (``last_move``); both are published for ``strata status``
  (:class:`DecisionBoard`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ray.serve.autoscaling_policy import replica_queue_length_autoscaling_policy

logger = logging.getLogger(__name__)

CPU_METRIC = "cpu_utilization"
"""The custom metric a CPU-scaled replica reports: its process's CPU time over wall time (1.0 = one busy core)."""


class CpuMeter:
    """This process's CPU use since the last reading: CPU seconds (every thread) over wall seconds."""

    def __init__(
        self,
        cpu_clock: Callable[[], float] = time.process_time,
        wall_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cpu_clock = cpu_clock
        self._wall_clock = wall_clock
        self._cpu = cpu_clock()
        self._wall = wall_clock()

    def read(self) -> float:
        """Utilisation since the previous :meth:`read` (or since the meter was made); 0 for no time passed."""
        cpu, wall = self._cpu_clock(), self._wall_clock()
        spent, elapsed = cpu - self._cpu, wall - self._wall
        self._cpu, self._wall = cpu, wall
        if elapsed <= 0:
            return 0.0
        return max(0.0, spent / elapsed)


@dataclass(frozen=True)
class CpuPolicyConfig:
    """The knobs of :class:`CpuPolicy` (``policy_kwargs`` in ``serve.yaml``)."""

    target: float = 0.7
    hysteresis: float = 0.2
    """Scale down only below ``target x (1 - hysteresis)``."""
    max_step: int = 1
    up_delay_s: float = 3.0
    """How long the mean must stay above the target before a scale-up."""
    down_delay_s: float = 20.0
    """How long the mean must stay below the band before a scale-down."""
    up_cooldown_s: float = 10.0
    """No scale-up within this long of the last change (new replicas need time to start and report)."""
    down_cooldown_s: float = 20.0
    """No scale-down within this long of the last change."""

    def __post_init__(self) -> None:
        if not 0 < self.target <= 1:
            raise ValueError(f"target must be in (0, 1], got {self.target}")
        if not 0 <= self.hysteresis < 1:
            raise ValueError(f"hysteresis must be in [0, 1), got {self.hysteresis}")
        if self.max_step < 1:
            raise ValueError(f"max_step must be at least 1, got {self.max_step}")
        for name in ("up_delay_s", "down_delay_s", "up_cooldown_s", "down_cooldown_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")

    @property
    def low_water(self) -> float:
        return self.target * (1 - self.hysteresis)


@dataclass(frozen=True)
class CpuReading:
    """What the policy sees on one tick."""

    now: float
    current: int
    """Replicas the deployment is scaled to now (Serve's target count)."""
    running: tuple[str, ...]
    """The running replicas."""
    utilization: Mapping[str, float]
    """Reported utilisation per replica (replicas that sent none are absent)."""
    min_replicas: int
    max_replicas: int


@dataclass
class Decision:
    replicas: int
    reason: str
    state: dict[str, Any] = field(default_factory=dict)


def decide(reading: CpuReading, config: CpuPolicyConfig, state: Mapping[str, Any]) -> Decision:
    """The replica count for ``reading``, why, and the state to keep for the next tick (see the module's doc)."""
    current = max(reading.current, 0)
    lo, hi = reading.min_replicas, max(reading.min_replicas, reading.max_replicas)
    new_state: dict[str, Any] = {
        k: state[k] for k in ("last_change", "last_move", "high_since", "low_since") if k in state
    }

    def answer(replicas: int, reason: str) -> Decision:
        replicas = min(max(replicas, lo), hi)
        mean_text = f"{mean:.2f}" if mean is not None else None
        if replicas != current:
            new_state["last_change"] = reading.now
            new_state["last_move"] = {"at": reading.now, "from": current, "to": replicas, "reason": reason}
            new_state.pop("high_since", None)
            new_state.pop("low_since", None)
        new_state["last_decision"] = {
            "at": reading.now, "from": current, "to": replicas, "reason": reason, "mean_utilization": mean_text,
        }  # fmt: skip
        return Decision(replicas, reason, new_state)

    reported = [reading.utilization[r] for r in reading.running if r in reading.utilization]
    mean = sum(reported) / len(reported) if reported else None
    if current < lo or current > hi:
        return answer(current, "outside the bounds: brought within them")
    if mean is None:
        new_state.pop("high_since", None)
        new_state.pop("low_since", None)
        return answer(current, "no replica reported its CPU: holding")
    since_change = reading.now - float(state.get("last_change", -math.inf))

    if mean > config.target:
        new_state.pop("low_since", None)
        high_since = float(state.get("high_since", reading.now))
        new_state["high_since"] = high_since
        wanted = min(math.ceil(current * mean / config.target), current + config.max_step, hi)
        if wanted <= current:
            return answer(current, "above the target, at the most replicas allowed")
        if reading.now - high_since < config.up_delay_s:
            return answer(current, "above the target, not for long enough yet")
        if since_change < config.up_cooldown_s:
            return answer(current, "above the target, cooling down from the last change")
        return answer(wanted, f"mean CPU {mean:.0%} above the target {config.target:.0%}")

    new_state.pop("high_since", None)
    missing = [r for r in reading.running if r not in reading.utilization]
    if mean >= config.low_water or current <= lo:
        new_state.pop("low_since", None)
        return answer(current, "within the band" if mean >= config.low_water else "at the fewest replicas allowed")
    if missing:
        new_state.pop("low_since", None)
        return answer(current, f"{len(missing)} replica(s) sent no report: not scaling down")
    low_since = float(state.get("low_since", reading.now))
    new_state["low_since"] = low_since
    fewer = max(current - config.max_step, lo)
    while fewer < current and current * mean / fewer > config.low_water:
        fewer += 1  # the step that would push the rest back into the band (or above it) is too big
    if fewer >= current:
        return answer(current, "below the band, but fewer replicas would run within it")
    if reading.now - low_since < config.down_delay_s:
        return answer(current, "below the band, not for long enough yet")
    if since_change < config.down_cooldown_s:
        return answer(current, "below the band, cooling down from the last change")
    return answer(fewer, f"mean CPU {mean:.0%} below {config.low_water:.0%}")


DECISIONS_NAMESPACE = b"strata-autoscaler"
"""Where the policies publish their decisions in Ray's GCS key-value store (key ``app/deployment``), for
``strata status``."""


def decision_key(app: str, deployment: str) -> bytes:
    return f"{app}/{deployment}".encode()


class DecisionBoard:
    """Publishes one deployment's latest decision (JSON) to Ray's GCS key-value store, from the Serve controller.

    A policy runs on every autoscaling tick (10 a second); the store is written only when the decision (its target
    or reason) changes, and otherwise at most every ``refresh_s`` (the metric's value moves). A store that cannot be
    written costs a warning, never the decision.
    """

    def __init__(self, refresh_s: float = 5.0, put: Callable[[bytes, bytes], object] | None = None) -> None:
        self._refresh_s = refresh_s
        self._put = put
        self._last: tuple[Any, ...] | None = None
        self._last_at = -math.inf
        self._warned = False

    def publish(self, app: str, deployment: str, record: Mapping[str, Any]) -> None:
        at = float(record.get("at", time.time()))
        key = (record.get("from"), record.get("to"), record.get("reason"))
        if key == self._last and at - self._last_at < self._refresh_s:
            return
        self._last, self._last_at = key, at
        try:
            put = self._put or _gcs_put
            put(decision_key(app, deployment), json.dumps(dict(record), default=str).encode())
        except Exception as exc:  # noqa: BLE001 - observability must never break scaling
            if not self._warned:
                self._warned = True
                logger.warning("autoscaler decisions of %s/%s not published: %s", app, deployment, exc)


def _gcs_put(key: bytes, value: bytes) -> None:
    from ray.experimental.internal_kv import _internal_kv_put

    _internal_kv_put(key, value, overwrite=True, namespace=DECISIONS_NAMESPACE)


class RequestPolicy:
    """Serve's own request-based policy (ongoing requests against ``target_ongoing_requests``), publishing its
    decisions for ``strata status``. Serve applies ``upscale_delay_s``/``downscale_delay_s`` around any policy, so
    the count it asks for is applied once the ask has held that long."""

    def __init__(self) -> None:
        self._board = DecisionBoard()

    def __call__(self, ctx: Any) -> tuple[float, dict[str, Any]]:
        desired, state = replica_queue_length_autoscaling_policy(ctx)
        previous = ctx.policy_state or {}
        state = dict(state or {})
        current = int(ctx.target_num_replicas)
        now = float(ctx.current_time or time.time())
        lo, hi = int(ctx.capacity_adjusted_min_replicas), int(ctx.capacity_adjusted_max_replicas)
        asked = min(max(math.ceil(float(desired)), lo), max(lo, hi))
        ongoing = float(ctx.total_num_requests)
        target = float(ctx.config.get_target_ongoing_requests())
        reason = f"{ongoing:.1f} ongoing requests on {ctx.current_num_replicas} replica(s), target {target:g} each" + (
            "" if asked == current else f": asks {asked} (applied after Serve's delay)"
        )
        # Serve changes the count after its delay, outside the policy: a target unlike the last tick's is that change.
        seen = previous.get("seen_target")
        move = previous.get("last_move")
        if seen is not None and int(seen) != current:
            move = {"at": now, "from": int(seen), "to": current, "reason": previous.get("last_reason", "")}
        state.update(seen_target=current, last_reason=reason, **({"last_move": move} if move else {}))
        self._board.publish(
            ctx.app_name, ctx.deployment_name,
            {"at": now, "from": current, "to": asked, "reason": reason, "metric": "ongoing_requests",
             "value": ongoing, "replicas": int(ctx.current_num_replicas), "last_change": move},
        )  # fmt: skip
        return desired, state


class CpuPolicy:
    """Serve's custom autoscaling policy for a CPU-bound deployment (a class: Serve makes it once, with
    ``policy_kwargs``, and calls it on every tick with an ``AutoscalingContext``)."""

    def __init__(self, **knobs: Any) -> None:
        self.config = CpuPolicyConfig(**knobs)
        self._board = DecisionBoard()

    def __call__(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        metrics = ctx.aggregated_metrics or {}
        by_replica = metrics.get(CPU_METRIC) or {}
        running = tuple(str(r) for r in ctx.running_replicas)
        reading = CpuReading(
            now=float(ctx.current_time if ctx.current_time is not None else time.time()),
            current=int(ctx.target_num_replicas),
            running=running,
            utilization={str(r): float(v) for r, v in by_replica.items() if _finite(v)},
            min_replicas=int(ctx.capacity_adjusted_min_replicas),
            max_replicas=int(ctx.capacity_adjusted_max_replicas),
        )
        decision = decide(reading, self.config, ctx.policy_state or {})
        last = decision.state.get("last_decision", {})
        mean = last.get("mean_utilization")
        self._board.publish(
            ctx.app_name, ctx.deployment_name,
            {**last, "metric": CPU_METRIC, "value": float(mean) if mean is not None else None,
             "replicas": len(running), "last_change": decision.state.get("last_move")},
        )  # fmt: skip
        return decision.replicas, decision.state


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
