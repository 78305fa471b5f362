"""Rate limits over HTTPS, shared by the session's two gateway replicas ("Must show" 2 of issue 5).

The session's limits (tests/conftest.py): ``auth`` 20/60 s, ``read`` 200/60 s,
127.0.0.1 exempt. Each test is a new client: it connects from its own loopback
address (the whole 127/8 is loopback), which the TLS front forwards in
``X-Forwarded-For``.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import ray

from strata.actors._detached import NAMESPACE
from strata.actors.ratelimit import shard_name, shard_of
from tests.conftest import System

pytestmark = pytest.mark.integration

_RATE_LIMIT = re.compile(r'"(\w+)";r=(\d+);t=(\d+)')
_WORKERS = 4


def _client(system: System, source: str) -> httpx.AsyncClient:
    """A client of the public endpoint connecting from ``source`` (a loopback address of its own)."""
    transport = httpx.AsyncHTTPTransport(local_address=source, verify=system.verify)
    return system.async_client(transport=transport)


def _quota(system: System, limit_class: str) -> tuple[int, float]:
    return system.settings.rate_limit(limit_class)  # type: ignore[arg-type]


@dataclass
class Answer:
    status: int
    at: float
    remaining: int | None
    headers: httpx.Headers
    body: Any


async def _hammer(client: httpx.AsyncClient, count: int, send: Callable[[httpx.AsyncClient], Any]) -> list[Answer]:
    """``count`` requests from ``_WORKERS`` concurrent workers; the answers in the order they arrived."""
    answers: list[Answer] = []
    left = [count]

    async def worker() -> None:
        while left[0] > 0:
            left[0] -= 1
            response = await send(client)
            match = _RATE_LIMIT.fullmatch(response.headers.get("RateLimit", ""))
            body = response.json() if response.headers.get("content-type", "").endswith("json") else None
            answers.append(
                Answer(
                    response.status_code,
                    time.monotonic(),
                    int(match.group(2)) if match else None,
                    response.headers,
                    body,
                )
            )

    await asyncio.gather(*(worker() for _ in range(_WORKERS)))
    return answers


async def _account(client: httpx.AsyncClient, system: System) -> tuple[str, str]:
    """A new account, logged in: ``(user id, access token)`` (two requests of the ``auth`` class)."""
    email = f"limits-{uuid.uuid4().hex[:10]}@example.com"
    password = system.remember_secret(f"Limits-Pass-{uuid.uuid4().hex[:12]}")
    registered = await client.post("/v1/auth/register", json={"email": email, "password": password})
    assert registered.status_code == 201, registered.text
    login = await client.post("/v1/auth/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    tokens = login.json()
    system.remember_secret(tokens["access_token"])
    system.remember_secret(tokens["refresh_token"])
    return registered.json()["user_id"], tokens["access_token"]


def _gateway_replica_ids() -> set[str]:
    names = [actor["name"] for actor in ray.util.list_named_actors(all_namespaces=True)]
    return {name.rsplit("#", 1)[1] for name in names if name.startswith("SERVE_REPLICA::gateway#")}


def _bucket(system: System, key: str) -> dict[str, Any]:
    shard = ray.get_actor(shard_name(shard_of(key, system.settings.rate_limit_shards)), namespace=NAMESPACE)
    info = ray.get(shard.inspect.remote(key), timeout=30)
    assert info is not None, f"no bucket for {key}"
    return dict(info)


def _first_refusal(answers: list[Answer]) -> Answer:
    """The first 429 of ``answers``. Not the last answer: the bucket refills while the requests go on (the ``read``
    class a token every 0.3 s), so on a slow machine the last one may be let through again."""
    refused = [a for a in answers if a.status == 429]
    assert refused, f"no request refused: {sorted({a.status for a in answers})}"
    return refused[0]


def _assert_refusal(answer: Answer, limit_class: str) -> None:
    assert answer.status == 429
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.body["status"] == 429 and answer.body["limit_class"] == limit_class
    assert answer.body["type"].endswith("/too-many-requests")
    assert int(answer.headers["Retry-After"]) >= 1
    assert answer.headers["RateLimit"].startswith(f'"{limit_class}";r=0;')


async def test_a_client_gets_its_read_allowance_across_both_gateway_replicas_then_429(
    system: System, ray_driver: None, record_property: Callable[[str, object], None]
) -> None:
    quota, window_s = _quota(system, "read")
    async with _client(system, "127.0.0.21") as client:
        user_id, token = await _account(client, system)
        headers = {"Authorization": f"Bearer {token}"}
        started = time.monotonic()
        answers = await _hammer(client, int(quota * 1.5), lambda c: c.get("/v1/auth/session", headers=headers))
        login = await client.post("/v1/auth/login", json={})

    allowed = [a for a in answers if a.status == 200]
    refused = [a for a in answers if a.status == 429]
    assert len(allowed) + len(refused) == len(answers), {a.status for a in answers}
    # The allowance over the span the client was served: the quota plus what refilled meanwhile.
    span_s = max(a.at for a in allowed) - started
    expected = quota + quota * span_s / window_s
    deviation = (len(allowed) - expected) / expected
    record_property("read_quota", f"{quota}/{window_s:g}s")
    record_property("read_allowed", len(allowed))
    record_property("read_expected", round(expected, 1))
    record_property("read_deviation_pct", round(100 * deviation, 1))
    assert abs(deviation) <= 0.10, f"allowed {len(allowed)} against {expected:.1f} expected"

    # Every answer carries the policy; the remaining count follows the requests down, within the leases in flight.
    assert {a.headers["RateLimit-Policy"] for a in answers} == {f'"read";q={quota};w={window_s:g}'}
    lease_cap = max(1, math.floor(quota * system.settings.rate_limit_lease_fraction))
    tolerance = 2 * lease_cap + _WORKERS + math.ceil(quota * span_s / window_s)
    for spent, answer in enumerate(allowed, start=1):
        assert answer.remaining is not None
        assert abs(answer.remaining - (quota - spent)) <= tolerance, (spent, answer.remaining, tolerance)
    assert allowed[0].remaining is not None and allowed[-1].remaining is not None
    assert allowed[0].remaining - allowed[-1].remaining >= quota - 2 * tolerance
    assert refused, "never refused"
    for answer in refused:
        _assert_refusal(answer, "read")
    record_property("read_retry_after_s", refused[0].headers["Retry-After"])

    # Both replicas spent this client's tokens, from one shared bucket, mostly without a call to it.
    bucket = _bucket(system, f"read:sub:{user_id}")
    holders = {holder: tokens for holder, tokens in bucket["holders"].items() if tokens > 0}
    record_property("read_tokens_per_replica", holders)
    record_property("read_lease_calls", bucket["leases"])
    assert len(holders) == 2, f"tokens leased by {holders}: expected both gateway replicas"
    assert set(holders) <= _gateway_replica_ids()
    assert bucket["leases"] < len(answers) / 3, f"{bucket['leases']} lease calls for {len(answers)} requests"

    # Login is a class of its own: the exhausted reads do not stop it (an invalid body answers 422, not 429).
    assert login.status_code == 422, login.text


async def test_login_and_reads_are_limited_separately(
    system: System, record_property: Callable[[str, object], None]
) -> None:
    auth_quota, _ = _quota(system, "auth")
    read_quota, _ = _quota(system, "read")

    async def invalid_login(c: httpx.AsyncClient) -> httpx.Response:
        return await c.post("/v1/auth/login", json={})  # refused or counted before validation: no auth call

    async def anonymous_read(c: httpx.AsyncClient) -> httpx.Response:
        return await c.get("/v1/auth/session")  # 401, charged to the client address

    # Reads exhausted first: login still answers.
    async with _client(system, "127.0.0.22") as client:
        reads = await _hammer(client, int(read_quota * 1.3), anonymous_read)
        assert {a.status for a in reads} == {401, 429}
        _assert_refusal(_first_refusal(reads), "read")
        logins = await _hammer(client, int(auth_quota * 1.5), invalid_login)
    assert {a.status for a in logins} == {422, 429}
    allowed_logins = sum(a.status == 422 for a in logins)
    assert logins[0].status == 422 and logins[0].headers["RateLimit-Policy"] == f'"auth";q={auth_quota};w=60'
    _assert_refusal(_first_refusal(logins), "auth")
    record_property("auth_allowed_after_reads", allowed_logins)
    assert auth_quota * 0.9 <= allowed_logins <= auth_quota * 1.1 + 1

    # Logins exhausted first: reads still answer.
    async with _client(system, "127.0.0.23") as client:
        logins = await _hammer(client, int(auth_quota * 1.5), invalid_login)
        assert {a.status for a in logins} == {422, 429}
        read = await client.get("/v1/auth/session")
        jwks = await client.get("/.well-known/jwks.json")
    assert read.status_code == 401 and read.headers["RateLimit"].startswith('"read";r=')
    assert jwks.status_code == 200


async def test_forged_forwarding_headers_do_not_make_a_new_client(system: System) -> None:
    auth_quota, _ = _quota(system, "auth")
    forged = iter(range(10_000))

    async def login_as_someone_else(c: httpx.AsyncClient) -> httpx.Response:
        n = next(forged)
        spoof = {"X-Forwarded-For": f"198.51.100.{n % 250}", "X-Strata-Edge": uuid.uuid4().hex * 2}
        return await c.post("/v1/auth/login", json={}, headers=spoof)

    async with _client(system, "127.0.0.24") as client:
        logins = await _hammer(client, int(auth_quota * 1.5), login_as_someone_else)
    assert sum(a.status == 422 for a in logins) <= auth_quota * 1.1 + 1
    _first_refusal(logins)


async def test_the_login_throttle_counts_failures_per_trusted_client_address(system: System) -> None:
    """The auth service's brute-force throttle gets the address the gateway trusts: one client's failures
    slow that client down, not the next one."""

    email = f"nobody-{uuid.uuid4().hex[:10]}@example.com"

    async def fail_login(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post("/v1/auth/login", json={"email": email, "password": "Wrong-Password-123"})

    free = system.settings.login_free_failures
    async with _client(system, "127.0.0.25") as client:
        first = [await fail_login(client) for _ in range(free)]
        throttled = await fail_login(client)
    assert [r.status_code for r in first] == [401] * free
    assert throttled.status_code == 429, throttled.text
    assert "limit_class" not in throttled.json()  # the throttle's answer, not the rate limit's
    async with _client(system, "127.0.0.26") as other:
        assert (await fail_login(other)).status_code == 401


async def _refresh_until_refused(client: httpx.AsyncClient, system: System, token: str, most: int) -> tuple[int, str]:
    """Refresh the session of ``token`` (each time with its newest token) until a refusal, at most ``most`` times:
    how many were answered, and the token the session holds now."""
    for answered in range(most):
        response = await client.post("/v1/auth/refresh", json={"refresh_token": token})
        if response.status_code != 200:
            return answered, token
        token = system.remember_secret(response.json()["refresh_token"])
    return most, token


async def _refused_refresh(client: httpx.AsyncClient, token: str, limit_class: str) -> None:
    response = await client.post("/v1/auth/refresh", json={"refresh_token": token})
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["limit_class"] == limit_class
    assert int(response.headers["Retry-After"]) >= 1


async def test_refresh_is_limited_per_session_and_account_not_by_an_addresss_failed_logins(system: System) -> None:
    """Failed logins that exhaust an address's ``auth`` allowance leave its refreshes alone (a NAT: one person's
    typos never log the others out); refreshes are limited per session (refresh-token family) and per account, and
    a refused refresh leaves its token good for later."""
    auth_quota, _ = _quota(system, "auth")
    family_quota, _ = system.settings.refresh_rate("family")
    account_quota, _ = system.settings.refresh_rate("account")
    assert family_quota < account_quota < 2 * family_quota  # the second session meets the account's bound first

    async def bad_login(c: httpx.AsyncClient) -> httpx.Response:
        body = {"email": f"typo-{uuid.uuid4().hex[:10]}@example.com", "password": "Wrong-Password-123"}
        return await c.post("/v1/auth/login", json=body)

    async with _client(system, "127.0.0.27") as client:
        email = f"nat-{uuid.uuid4().hex[:10]}@example.com"
        password = system.remember_secret(f"Nat-Pass-{uuid.uuid4().hex[:12]}")
        registered = await client.post("/v1/auth/register", json={"email": email, "password": password})
        assert registered.status_code == 201, registered.text
        sessions = []
        for _ in range(3):
            login = await client.post("/v1/auth/login", json={"email": email, "password": password})
            assert login.status_code == 200, login.text
            sessions.append(system.remember_secret(login.json()["refresh_token"]))

        failed = await _hammer(client, int(auth_quota * 1.5), bad_login)
        assert {a.status for a in failed} == {401, 429}
        _assert_refusal(_first_refusal(failed), "auth")

        # The address can log in no more, yet its sessions refresh: each until its own allowance is spent.
        answered, sessions[0] = await _refresh_until_refused(client, system, sessions[0], 2 * family_quota)
        assert answered >= family_quota, "the session's whole allowance, the first refresh included"
        await _refused_refresh(client, sessions[0], "refresh-family")

        # The second session has room of its own, the account less: it stops at the account's bound.
        answered_second, sessions[1] = await _refresh_until_refused(client, system, sessions[1], 2 * family_quota)
        assert answered + answered_second >= account_quota
        assert answered_second < family_quota
        await _refused_refresh(client, sessions[1], "refresh-account")
        await _refused_refresh(client, sessions[2], "refresh-account")  # never refreshed, but the same account

        # Another account behind the same address refreshes as usual.
        other, other_password = f"nat-{uuid.uuid4().hex[:10]}@example.com", f"Nat-Pass-{uuid.uuid4().hex[:12]}"
        system.remember_secret(other_password)
    async with _client(system, "127.0.0.28") as elsewhere:  # the first address may register no more
        made = await elsewhere.post("/v1/auth/register", json={"email": other, "password": other_password})
        assert made.status_code == 201, made.text
        login = await elsewhere.post("/v1/auth/login", json={"email": other, "password": other_password})
        assert login.status_code == 200, login.text
        token = system.remember_secret(login.json()["refresh_token"])
    async with _client(system, "127.0.0.27") as client:
        refreshed = await client.post("/v1/auth/refresh", json={"refresh_token": token})
        assert refreshed.status_code == 200, refreshed.text
        system.remember_secret(refreshed.json()["refresh_token"])
        # The refused tokens are still the sessions' newest: refused for now, neither spent nor revoked.
        for held in sessions:
            again = await client.post("/v1/auth/refresh", json={"refresh_token": held})
            assert again.status_code == 429, again.text
