"""Autoscaling against the running system (issue 13): the processing deployment scales on its replicas' CPU from
one replica to two under ``/stats`` load and back to one after it, and no request fails on the way down.

The load is real work: collections of 2,000 items with 64 numbers each, seeded straight into PostgreSQL (their
statistics never saw an event, so no replica holds them), read round-robin by six clients. The session keeps four
collections' statistics per processing replica (``data_stats_cache_entries``), fewer than the sixteen cycled, so
every read is computed. Waits are bounded; the figures (times, the CPU the replicas reported) go to the log.

The session sets the CPU policy's target to 0.5 (``STRATA_CPU_SCALING_TARGET``), not serve.yaml's 0.7: on a 2-core
machine one busy replica reported at most 0.63-0.76 of a core across four runs, so 0.7 held for 3 s is not assured.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from strata.serve_apps._autoscaling import DECISIONS_NAMESPACE, decision_key
from tests.conftest import System
from tests.integration.accounts import Account, account, call

pytestmark = pytest.mark.integration

logger = logging.getLogger("strata.tests.autoscaling")

COLLECTIONS = 16
ITEMS = 2_000
NUMBERS = 64
CLIENTS = 6
SCALE_UP_WITHIN_S = 150.0
"""Bound on the scale-up: the policy steps up after 3 s above 70 % (reports each second, averaged over 5 s), so it
comes within about 15 s of the load starting; the bound only keeps a broken policy from hanging the test."""
SCALE_DOWN_WITHIN_S = 150.0
"""Bound on the scale-down: 20 s below the band and 20 s since the last change, then Serve drains the replica."""

_SEED = """
INSERT INTO data.items (collection_id, id, title, attributes, tags, created_by, updated_by)
SELECT $1::uuid, gen_random_uuid(), 'item ' || n,
       (SELECT jsonb_object_agg('m' || k, (random() * 100 * (k + 1))::int)
        FROM generate_series(0, $3 - 1) k WHERE n > 0),
       ARRAY['t' || (n % 5)], $2::uuid, $2::uuid
FROM generate_series(1, $4) n
"""


def replica_states(app: str, deployment: str) -> Counter[str]:
    from ray import serve

    states = serve.status().applications[app].deployments[deployment].replica_states
    return Counter({str(state): int(n) for state, n in states.items()})


def published_decision(app: str, deployment: str) -> dict[str, Any] | None:
    """What the deployment's policy last published for `strata status` (Ray's GCS key-value store)."""
    from ray.experimental.internal_kv import _internal_kv_get

    raw = _internal_kv_get(decision_key(app, deployment), namespace=DECISIONS_NAMESPACE)
    return json.loads(raw) if raw else None


@dataclass
class Outcomes:
    """Every response of a load phase, by status, and the CPU figures the policy published meanwhile."""

    codes: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    cpu: list[float] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(n for code, n in self.codes.items() if not 200 <= code < 300 and code != 429) + sum(
            self.errors.values()
        )


async def _seed(system: System, owner: Account) -> list[str]:
    async with system.async_client(timeout=60) as client:
        ids = []
        for n in range(COLLECTIONS):
            made = await call(
                client, "POST", "/v1/collections", owner, json={"name": f"cpu-{n}-{uuid.uuid4().hex[:6]}"}
            )
            assert made.status_code == 201, made.text
            ids.append(made.json()["id"])
    conn = await asyncpg.connect(system.admin_dsn)
    try:
        for cid in ids:
            await conn.execute(_SEED, cid, owner.user_id, NUMBERS, ITEMS)
    finally:
        await conn.close()
    return ids


async def _load(
    system: System, owner: Account, ids: list[str], clients: int, until: Any, outcomes: Outcomes, pause_s: float = 0.0
) -> None:
    """``clients`` loops reading ``/stats`` of ``ids`` until ``until()`` is true, all of them together round-robin
    (one sequence, not one per client: a collection comes again only after every other one, so with more collections
    than a replica's cache holds, each read is computed)."""
    turns = itertools.count()

    async def loop() -> None:
        async with system.async_client(timeout=60) as client:
            while not until():
                cid = ids[next(turns) % len(ids)]
                try:
                    outcomes.codes[(await call(client, "GET", f"/v1/collections/{cid}/stats", owner)).status_code] += 1
                except httpx.HTTPError as exc:
                    outcomes.errors[type(exc).__name__] += 1
                if pause_s:
                    await asyncio.sleep(pause_s)

    await asyncio.gather(*(loop() for _ in range(clients)))


async def _watch(app: str, deployment: str, done: Any, outcomes: Outcomes) -> None:
    while not done():
        record = await asyncio.to_thread(published_decision, app, deployment)
        if record and record.get("value") is not None:
            outcomes.cpu.append(float(record["value"]))
        await asyncio.sleep(1.0)


async def test_processing_scales_up_on_cpu_and_back_down_without_a_failed_request(
    system: System, ray_driver: None
) -> None:
    assert replica_states("data", "DataProcessing")["RUNNING"] == 1, "the session starts with one processing replica"
    owner = await account(system)
    ids = await _seed(system, owner)

    # Up: six clients computing statistics until a second replica runs.
    heavy = Outcomes()
    up_at = await _phase(
        _reached("data", "DataProcessing", lambda states: states["RUNNING"] >= 2, SCALE_UP_WITHIN_S),
        lambda until: _load(system, owner, ids, CLIENTS, until, heavy),
        heavy,
    )
    up = published_decision("data", "DataProcessing")
    logger.info("scale-up after %s s; responses %s; CPU reported max %.2f; %s", up_at, dict(heavy.codes),
                max(heavy.cpu, default=0.0), up)  # fmt: skip
    assert up_at is not None, f"no second processing replica within {SCALE_UP_WITHIN_S:.0f}s; CPU {heavy.cpu}"
    target = system.settings.cpu_scaling_target or 0.7
    assert max(heavy.cpu) > target, f"scaled up without a report above the target {target}: {heavy.cpu}"
    assert up is not None and up["last_change"]["from"] == 1 and up["last_change"]["to"] == 2, up
    assert "above the target" in up["last_change"]["reason"], up
    assert heavy.failed == 0, f"requests failed under load: {heavy.codes} {heavy.errors}"

    # Down: the load stops but for one client reading one (cached) collection's statistics every 0.2 s, which must
    # all be answered while the second replica is drained and removed.
    light = Outcomes()
    down_at = await _phase(
        _reached("data", "DataProcessing", lambda states: _only(states, 1), SCALE_DOWN_WITHIN_S),
        lambda until: _load(system, owner, ids[:1], 1, until, light, pause_s=0.2),
        light,
    )
    down = published_decision("data", "DataProcessing")
    logger.info("scale-down after %s s; responses %s; CPU reported %s; %s", down_at, dict(light.codes),
                light.cpu[-5:], down)  # fmt: skip
    assert down_at is not None, f"the second processing replica was not removed within {SCALE_DOWN_WITHIN_S:.0f}s"
    assert light.failed == 0, f"requests failed during the scale-down: {light.codes} {light.errors}"
    assert sum(light.codes.values()) > 0
    assert down is not None and down["last_change"]["from"] == 2 and down["last_change"]["to"] == 1, down
    assert "below" in down["last_change"]["reason"], down


class _Reached:
    """A condition on a deployment's replica states, asked of the controller at most once a second, with the time
    it first held (seconds from the start), or the bound reached without it."""

    def __init__(self, app: str, deployment: str, condition: Any, within_s: float) -> None:
        self.app, self.deployment, self.condition, self.within_s = app, deployment, condition, within_s
        self.started = time.monotonic()
        self.at: float | None = None
        self._asked = -1.0

    def __call__(self) -> bool:
        now = time.monotonic()
        if self.at is None and now - self._asked >= 1.0:
            self._asked = now
            if self.condition(replica_states(self.app, self.deployment)):
                self.at = round(now - self.started, 1)
        return self.at is not None or now - self.started > self.within_s


def _reached(app: str, deployment: str, condition: Any, within_s: float) -> _Reached:
    return _Reached(app, deployment, condition, within_s)


def _only(states: Counter[str], replicas: int) -> bool:
    """Exactly ``replicas`` replicas, all running (none starting or stopping)."""
    return states["RUNNING"] == replicas and sum(states.values()) == replicas


async def _phase(until: _Reached, load: Any, outcomes: Outcomes) -> float | None:
    """``load(until)`` with the published CPU figures watched meanwhile; when ``until`` first held, or ``None``."""
    await asyncio.gather(load(until), _watch(until.app, until.deployment, until, outcomes))
    return until.at


STRATA = str(Path(sys.executable).parent / "strata")
BURST_CLIENTS = 96
BURST_WITHIN_S = 90.0
"""Bound on the request-rate scale-up: a count above the target for 3 s (reports each second over 5 s) adds a
replica, and a new replica starts in a few seconds; the bound only keeps a broken policy from hanging the test."""
SETTLE_WITHIN_S = 120.0
"""Bound on a scale-down: 30 s below the target, then Serve drains the replica (graceful shutdown)."""


def _strata(system: System, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [STRATA, *args], env=system.env, capture_output=True, text=True, timeout=240, check=False
    )  # fmt: skip


def _settled(app: str, deployment: str, replicas: int) -> bool:
    return _only(replica_states(app, deployment), replicas)


def _wait_settled(deployments: tuple[tuple[str, str], ...], replicas: int) -> None:
    deadline = time.monotonic() + SETTLE_WITHIN_S
    while not all(_settled(a, d, replicas) for a, d in deployments) and time.monotonic() < deadline:
        time.sleep(1.0)


async def _me_load(system: System, who: Account, clients: int, until: Any, outcomes: Outcomes, pause_s: float) -> None:
    """``clients`` loops calling ``GET /v1/users/me``, one HTTP client (one connection) each, until ``until()``."""

    async def loop() -> None:
        async with system.async_client(timeout=30) as client:
            while not until():
                try:
                    outcomes.codes[(await call(client, "GET", "/v1/users/me", who)).status_code] += 1
                except httpx.HTTPError as exc:
                    outcomes.errors[type(exc).__name__] += 1
                if pause_s:
                    await asyncio.sleep(pause_s)

    await asyncio.gather(*(loop() for _ in range(clients)))


def _every_second(check: Any) -> Any:
    """``check`` (a controller call) at most once a second; in between its last answer."""
    memo = {"at": -1.0, "value": False}

    def probe() -> bool:
        if time.monotonic() - memo["at"] >= 1.0:
            memo["at"], memo["value"] = time.monotonic(), bool(check())
        return bool(memo["value"])

    return probe


async def test_a_burst_on_me_scales_up_on_requests_and_every_scale_down_answers_every_request(
    system: System, ray_driver: None
) -> None:
    """The session runs two gateway and two users replicas; here each may grow to three. A burst of 96 clients on
    ``me`` scales one of them up on ongoing requests; after it, light load sees it return to two, and then
    ``strata scale users --replicas 1`` under load takes users from two to one; no request fails on any way down."""
    who = await account(system)
    apps = (("gateway", "Gateway"), ("users", "UsersService"))
    try:
        for app, _ in apps:
            result = _strata(system, "scale", app, "--min", "2", "--max", "3")
            assert result.returncode == 0, result.stderr

        burst = Outcomes()
        started = time.monotonic()
        grown: list[tuple[str, float]] = []

        def one_grew() -> bool:
            for app, deployment in apps:
                if not grown and replica_states(app, deployment)["RUNNING"] >= 3:
                    grown.append((app, time.monotonic() - started))
            return bool(grown) or time.monotonic() - started > BURST_WITHIN_S

        await _me_load(system, who, BURST_CLIENTS, _every_second(one_grew), burst, pause_s=0.0)
        decisions = {app: published_decision(app, deployment) for app, deployment in apps}
        logger.info("burst: %s; responses %s %s; decisions %s", grown, dict(burst.codes), dict(burst.errors), decisions)
        assert grown, f"neither the gateway nor users scaled up within {BURST_WITHIN_S:.0f}s: {decisions}"
        decision = decisions[grown[0][0]]
        assert decision is not None and decision["last_change"]["to"] == 3, decision

        # Down on requests: a light load, every request answered, until each is back at two.
        light = Outcomes()
        down_started = time.monotonic()

        def both_at_two() -> bool:
            return all(_settled(a, d, 2) for a, d in apps) or time.monotonic() - down_started > SETTLE_WITHIN_S

        await _me_load(system, who, 2, _every_second(both_at_two), light, pause_s=0.05)
        logger.info("scale-down on requests: %.1f s; responses %s %s", time.monotonic() - down_started,
                    dict(light.codes), dict(light.errors))  # fmt: skip
        assert all(_settled(a, d, 2) for a, d in apps), {a: replica_states(a, d) for a, d in apps}
        assert light.failed == 0 and sum(light.codes.values()) > 0, (light.codes, light.errors)

        # Down by hand, under load: `strata scale users --replicas 1` from two.
        by_hand = Outcomes()
        scaled = asyncio.ensure_future(asyncio.to_thread(_strata, system, "scale", "users", "--replicas", "1"))
        hand_started = time.monotonic()

        def users_at_one() -> bool:
            return (scaled.done() and _settled("users", "UsersService", 1)) or (
                time.monotonic() - hand_started > SETTLE_WITHIN_S
            )

        await _me_load(system, who, 8, _every_second(users_at_one), by_hand, pause_s=0.0)
        result = await scaled
        logger.info("strata scale users --replicas 1: %.1f s; responses %s %s", time.monotonic() - hand_started,
                    dict(by_hand.codes), dict(by_hand.errors))  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert _settled("users", "UsersService", 1), replica_states("users", "UsersService")
        assert by_hand.failed == 0 and sum(by_hand.codes.values()) > 0, (by_hand.codes, by_hand.errors)
    finally:
        for app, _ in apps:
            _strata(system, "scale", app, "--reset")
        await asyncio.to_thread(_wait_settled, apps, 2)  # the rest of the session runs on two of each again
    assert all(_settled(a, d, 2) for a, d in apps), {a: replica_states(a, d) for a, d in apps}
