"""Revocation at the edge under failure, over HTTPS: a raced role change dies by its pv, a feed without Kafka fails
closed.

Both tests pause a real process with SIGSTOP and let it go on with SIGCONT in a ``finally`` (nothing is lost, and the
session's system is whole again for the next test): the auth service's consumer runner in the first, the Kafka broker
in the second. The second prints what it measured (``-s``): the bound is reported, never asserted.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import time
from typing import Any

import httpx
import jwt
import pytest
import ray
from ray import serve

from strata.actors.consumers import consumer_name
from strata.cluster._state import State
from tests.conftest import System
from tests.integration.test_authorization import Principal, _call, _principal, _session

pytestmark = pytest.mark.integration

_GIVE_UP_S = 120.0
"""How long a test waits for something that must happen (a hang guard, not a measured bound)."""


def _refresh(system: System, principal: Principal) -> dict[str, Any]:
    response = httpx.post(
        system.runtime.gateway_url + "/v1/auth/refresh",
        json={"refresh_token": principal.tokens["refresh_token"]},
        timeout=30,
        verify=system.verify,
    )
    assert response.status_code == 200, response.text
    tokens = dict(response.json())
    system.remember_secret(tokens["access_token"])
    system.remember_secret(tokens["refresh_token"])
    return tokens


async def test_a_token_refreshed_while_the_auth_service_lags_a_demotion_is_refused_at_the_edge_by_its_pv(
    system: System, ray_driver: None
) -> None:
    acting = await _principal(system, "admin")
    target = await _principal(system, "admin")
    old_pv = jwt.decode(target.tokens["access_token"], options={"verify_signature": False})["pv"]
    runner = ray.get_actor(consumer_name("auth", 0), namespace="strata")
    pid = (await runner.stats.remote())["pid"]
    os.kill(pid, signal.SIGSTOP)  # the auth service's copy of the roles stops following the users service
    try:
        demote = await asyncio.to_thread(
            _call, system, "PUT", f"/v1/users/{target.user_id}/roles", acting, json={"roles": ["member"]}
        )
        assert demote.status_code == 200, demote.text
        demoted_at = time.time()
        # Refresh in a later second than the change, so the token's time says "after the change" beyond doubt:
        # only its pv can give it away.
        await asyncio.sleep(math.floor(demoted_at) + 1.05 - time.time())
        raced = Principal(
            "admin", target.user_id, target.email, target.password, await asyncio.to_thread(_refresh, system, target)
        )
        claims = jwt.decode(raced.tokens["access_token"], options={"verify_signature": False})
        assert claims["roles"] == ["admin"] and claims["pv"] == old_pv, "the refresh raced: old roles, old pv"
        assert claims["iat"] > demoted_at, "issued after the change: only its pv gives it away"
        deadline = time.monotonic() + _GIVE_UP_S
        while (response := await asyncio.to_thread(_call, system, "GET", "/v1/users", raced)).status_code != 401:
            assert response.status_code == 200, response.text
            assert time.monotonic() < deadline, "a token with the old pv kept working at the edge"
            await asyncio.sleep(0.1)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert "permissions" in response.json()["detail"]
    finally:
        os.kill(pid, signal.SIGCONT)
    # The consumer goes on where it stopped: the auth service learns the demotion, new tokens carry the new pv.
    deadline = time.monotonic() + _GIVE_UP_S
    while True:
        tokens = await asyncio.to_thread(_refresh, system, raced)
        raced = Principal("member", target.user_id, target.email, target.password, tokens)
        claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
        if claims["roles"] == ["member"]:
            break
        assert time.monotonic() < deadline, "the auth service never applied the demotion"
        await asyncio.sleep(0.5)
    assert claims["pv"] > old_pv


def _feed_states(calls: int = 20) -> dict[str, dict[str, Any]]:
    handle = serve.get_app_handle("gateway")
    seen: dict[str, dict[str, Any]] = {}
    for _ in range(calls):
        state = handle.revocation_feed_state.remote().result(timeout_s=15)
        seen[state["replica"]] = state
    return seen


def _anonymous_routes_answer(system: System) -> None:
    with system.client() as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/.well-known/jwks.json").status_code == 200


async def test_without_kafka_a_gateway_refuses_authenticated_requests_and_a_restarted_replica_waits_to_catch_up(
    system: System, ray_driver: None
) -> None:
    member = await _principal(system, "member")
    assert await asyncio.to_thread(_session, system, member) == 200
    before = set(await asyncio.to_thread(_feed_states))
    kafka_pid = State.load(system.settings.data_dir.resolve()).components["kafka"].pids[0]
    figures: dict[str, float] = {}
    lost = time.monotonic()
    os.kill(kafka_pid, signal.SIGSTOP)  # the broker stops answering, connections stay open: the hard case
    try:
        deadline = lost + _GIVE_UP_S
        while (refused := await asyncio.to_thread(_call, system, "GET", "/v1/auth/session", member)).status_code == 200:
            assert time.monotonic() < deadline, "authenticated requests kept working with Kafka gone (fails open)"
            await asyncio.sleep(0.2)
        figures["kafka lost -> first 503"] = time.monotonic() - lost
        assert refused.status_code == 503, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["type"].endswith("/revocation-feed-unavailable")
        await asyncio.to_thread(_anonymous_routes_answer, system)

        # The stale replicas fail their health checks, and Serve replaces them with replicas that have never read
        # the feed: those refuse authenticated requests too, and keep answering anonymous ones.
        while not (restarted := set(await asyncio.to_thread(_feed_states)) - before):
            assert time.monotonic() < deadline, "no gateway replica left rotation"
            await asyncio.sleep(0.5)
        figures["kafka lost -> first replica replaced"] = time.monotonic() - lost
        while set(states := await asyncio.to_thread(_feed_states)) & before:
            assert time.monotonic() < deadline, "a stale gateway replica stayed in rotation"
            await asyncio.sleep(0.5)
        figures["kafka lost -> every stale replica replaced"] = time.monotonic() - lost
        assert {state["state"] for state in states.values()} == {"catching-up"}, states
        for _ in range(5):
            response = await asyncio.to_thread(_call, system, "GET", "/v1/auth/session", member)
            assert response.status_code == 503, response.text
            assert response.json()["type"].endswith("/revocation-feed-unavailable")
        await asyncio.to_thread(_anonymous_routes_answer, system)
        assert restarted
    finally:
        os.kill(kafka_pid, signal.SIGCONT)
    back = time.monotonic()
    deadline = back + _GIVE_UP_S
    while await asyncio.to_thread(_session, system, member) != 200:
        assert time.monotonic() < deadline, "the restarted replicas never caught up"
        await asyncio.sleep(0.2)
    figures["kafka back -> authenticated 200"] = time.monotonic() - back
    print("revocation feed without Kafka:", {k: round(v, 1) for k, v in figures.items()})
