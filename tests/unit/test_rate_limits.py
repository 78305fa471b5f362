"""Rate limits without Ray: buckets, lease sizing, the shard's accounting, the replica's leases, the trust rule for
the client address, the headers, and the gateway refusing before it validates (in process, a fake shard)."""

from __future__ import annotations

import asyncio
import math
import re

import httpx
import pytest
from pydantic import ValidationError

from strata.actors.ratelimit import (
    Grant,
    LeasedLimiter,
    RatePolicy,
    ShardState,
    TokenBucket,
    lease_size,
    seconds_to_full,
    shard_of,
)
from strata.schemas import Settings
from strata.serve_apps.gateway._ratelimit import (
    GatewayRateLimits,
    rate_limit_headers,
    rate_limit_identity,
    trusted_client_address,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class InProcessShard:
    """The LeaseSource of one replica, backed by a ShardState in this process (what the actor wraps)."""

    def __init__(self, state: ShardState, holder: str, fraction: float = 0.1) -> None:
        self.state = state
        self.holder = holder
        self.fraction = fraction
        self.calls = 0

    async def lease(self, key: str, policy: RatePolicy, returning: int) -> Grant:
        self.calls += 1
        return self.state.lease(key, policy, self.fraction, returning, self.holder)

    async def give_back(self, key: str, policy: RatePolicy, tokens: int) -> None:
        self.state.give_back(key, policy, tokens, self.holder)


# --- the arithmetic ----------------------------------------------------------------------------------------------


def test_a_policy_needs_a_quota_and_a_window() -> None:
    assert RatePolicy(100, 60).rate == pytest.approx(100 / 60)
    assert str(RatePolicy(100, 60.0)) == "100/60s"
    with pytest.raises(ValueError, match="quota"):
        RatePolicy(0, 60)
    with pytest.raises(ValueError, match="window"):
        RatePolicy(10, 0)


def test_a_bucket_starts_full_refills_at_the_rate_and_never_above_the_quota() -> None:
    policy = RatePolicy(10, 10.0)  # one token a second
    bucket = TokenBucket(policy, now=0.0)
    assert bucket.take(policy, 4, now=0.0) == 4
    assert bucket.take(policy, 20, now=0.0) == 6  # only what is there
    assert bucket.take(policy, 1, now=0.5) == 0  # half a token is not a token
    assert bucket.seconds_until(policy, 1.0) == pytest.approx(0.5)
    assert bucket.take(policy, 5, now=3.0) == 3  # three seconds, three tokens
    bucket.give_back(policy, 100, now=3.0)
    assert bucket.tokens == 10  # capped at the quota
    bucket.refill(policy, now=1000.0)
    assert bucket.tokens == 10


def test_over_a_span_a_bucket_allows_the_quota_plus_what_refills() -> None:
    policy = RatePolicy(50, 10.0)  # 5 a second
    bucket = TokenBucket(policy, now=0.0)
    allowed = sum(bucket.take(policy, 1, now=t / 100) for t in range(0, 400))  # 4 s of 100 requests a second
    assert allowed == 50 + 4 * 5 - 1 or allowed == 50 + 4 * 5  # the last refill may fall just after the span


def test_leases_are_at_most_the_fraction_and_shrink_as_the_bucket_runs_low() -> None:
    policy = RatePolicy(200, 60)
    assert lease_size(policy, 200, fraction=0.1) == 20
    assert lease_size(policy, 40, fraction=0.1) == 10  # a quarter of what is left
    assert lease_size(policy, 5, fraction=0.1) == 1
    assert lease_size(policy, 1, fraction=0.1) == 1
    assert lease_size(policy, 0.99, fraction=0.1) == 0
    assert lease_size(RatePolicy(3, 60), 3, fraction=0.1) == 1  # never below one token


def test_seconds_to_full() -> None:
    assert seconds_to_full(RatePolicy(60, 60), 60) == 0
    assert seconds_to_full(RatePolicy(60, 60), 0) == pytest.approx(60)


def test_keys_spread_over_shards_by_a_stable_hash() -> None:
    keys = [f"read:ip:10.0.{i // 250}.{i % 250}" for i in range(1000)]
    shards = [shard_of(key, 4) for key in keys]
    assert shard_of("read:sub:abc", 4) == shard_of("read:sub:abc", 4) == 1  # CRC-32, the same in every process
    assert all(250 - 60 < shards.count(k) < 250 + 60 for k in range(4))


# --- the shard ---------------------------------------------------------------------------------------------------


def test_a_shard_never_leases_more_than_the_bucket_and_accounts_per_holder() -> None:
    clock = Clock()
    shard = ShardState(clock)
    policy = RatePolicy(100, 60)
    leased = {"a": 0, "b": 0}
    while True:
        grants = {holder: shard.lease("read:ip:x", policy, 0.1, 0, holder) for holder in leased}
        for holder, grant in grants.items():
            leased[holder] += grant.tokens
        if all(grant.tokens == 0 for grant in grants.values()):
            break
    assert sum(leased.values()) == 100
    info = shard.inspect("read:ip:x")
    assert info is not None and info["holders"] == leased and info["tokens"] < 1
    empty = shard.lease("read:ip:x", policy, 0.1, 0, "a")
    assert empty.tokens == 0 and empty.retry_after_s == pytest.approx(0.6, abs=0.01)  # 1 token at 100/60 s
    shard.give_back("read:ip:x", policy, 7, "a")
    info = shard.inspect("read:ip:x")
    assert info is not None and info["tokens"] == pytest.approx(7) and info["holders"]["a"] == leased["a"] - 7


def test_a_shard_forgets_buckets_idle_for_a_whole_window() -> None:
    clock = Clock()
    shard = ShardState(clock)
    shard.lease("auth:ip:x", RatePolicy(5, 30), 0.1, 0, "a")
    clock.now += 31
    shard.lease("auth:ip:y", RatePolicy(5, 30), 0.1, 0, "a")
    assert shard.inspect("auth:ip:x") is None
    assert shard.stats() == {"keys": 1, "leases": 2}


# --- the replica's leases ----------------------------------------------------------------------------------------


async def test_two_replicas_share_one_allowance_and_spend_most_of_it_without_a_call() -> None:
    clock = Clock()
    shard = ShardState(clock)
    sources = [InProcessShard(shard, "replica-a"), InProcessShard(shard, "replica-b")]
    replicas = [LeasedLimiter(source, clock=clock) for source in sources]
    policy = RatePolicy(200, 60)
    allowed = 0
    for i in range(300):  # alternate, as a balancer would, with no time passing: exactly the quota
        decision = await replicas[i % 2].check("read:sub:u1", policy)
        allowed += decision.allowed
    assert allowed == 200
    calls = sum(source.calls for source in sources)
    assert calls < 200 / 4, f"{calls} lease calls for 200 requests"
    info = shard.inspect("read:sub:u1")
    assert info is not None and set(info["holders"]) == {"replica-a", "replica-b"}
    assert sum(info["holders"].values()) == 200


async def test_one_replica_reports_the_remaining_allowance_exactly() -> None:
    clock = Clock()
    limiter = LeasedLimiter(InProcessShard(ShardState(clock), "a"), clock=clock)
    policy = RatePolicy(40, 60)
    remaining = [(await limiter.check("auth:ip:x", policy)).remaining for _ in range(40)]
    assert remaining == list(range(39, -1, -1))
    refused = await limiter.check("auth:ip:x", policy)
    assert not refused.allowed and refused.remaining == 0
    assert refused.retry_after_s == pytest.approx(1.5)  # one token at 40/60 s
    assert refused.reset_s == pytest.approx(60)


async def test_a_refused_client_costs_no_call_until_its_retry_time() -> None:
    clock = Clock()
    source = InProcessShard(ShardState(clock), "a")
    limiter = LeasedLimiter(source, clock=clock)
    policy = RatePolicy(2, 10)
    assert [(await limiter.check("k", policy)).allowed for _ in range(3)] == [True, True, False]
    calls = source.calls
    for _ in range(50):
        assert not (await limiter.check("k", policy)).allowed
    assert source.calls == calls
    clock.now += 5.0  # one token back
    assert (await limiter.check("k", policy)).allowed
    assert source.calls == calls + 1


async def test_expired_leases_are_given_back_to_the_shared_bucket() -> None:
    clock = Clock()
    shard = ShardState(clock)
    limiter = LeasedLimiter(InProcessShard(shard, "a"), lease_ttl_s=2.0, clock=clock)
    policy = RatePolicy(1000, 3600)
    assert (await limiter.check("k", policy)).allowed  # leases 100, spends 1
    info = shard.inspect("k")
    assert info is not None and info["tokens"] == pytest.approx(900)
    assert await limiter.return_expired() == 0  # not expired yet
    clock.now += 2.0
    assert await limiter.return_expired() == 99
    info = shard.inspect("k")
    assert info is not None and info["holders"] == {"a": 1}
    assert info["tokens"] == pytest.approx(999, abs=1)


async def test_concurrent_requests_of_one_key_wait_for_a_single_lease_call() -> None:
    clock = Clock()
    shard = ShardState(clock)
    release = asyncio.Event()

    class SlowShard(InProcessShard):
        async def lease(self, key: str, policy: RatePolicy, returning: int) -> Grant:
            await release.wait()
            return await super().lease(key, policy, returning)

    source = SlowShard(shard, "a")
    limiter = LeasedLimiter(source, clock=clock)
    policy = RatePolicy(1000, 60)
    checks = [asyncio.create_task(limiter.check("k", policy)) for _ in range(50)]
    await asyncio.sleep(0.01)
    release.set()
    decisions = await asyncio.gather(*checks)
    assert all(d.allowed for d in decisions)
    assert source.calls == 1  # one lease of 100 served all 50


async def test_unreachable_shards_fall_back_to_a_local_limit_per_replica() -> None:
    clock = Clock()

    class DeadShard(InProcessShard):
        async def lease(self, key: str, policy: RatePolicy, returning: int) -> Grant:
            self.calls += 1
            raise ConnectionError("actor died")

    source = DeadShard(ShardState(clock), "a")
    limiter = LeasedLimiter(source, fallback_s=5.0, clock=clock)
    policy = RatePolicy(3, 60)
    decisions = [await limiter.check("k", policy) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]  # the quota, enforced locally
    assert not any(d.shared for d in decisions)
    assert source.calls == 1 and limiter.falling_back  # one failed call, then none during the fallback
    assert limiter.last_error == "ConnectionError: actor died"
    clock.now += 5.0
    await limiter.check("k", policy)
    assert source.calls == 2  # tries the shards again


async def test_a_shard_that_does_not_answer_in_time_counts_as_unreachable() -> None:
    class HungShard(InProcessShard):
        async def lease(self, key: str, policy: RatePolicy, returning: int) -> Grant:
            await asyncio.sleep(10)
            raise AssertionError("unreachable")

    limiter = LeasedLimiter(HungShard(ShardState(), "a"), call_timeout_s=0.05)
    decision = await limiter.check("k", RatePolicy(5, 60))
    assert decision.allowed and not decision.shared and limiter.falling_back


# --- the gateway's rules -----------------------------------------------------------------------------------------

EDGE = "e" * 64


@pytest.mark.parametrize(
    ("headers", "edge_token", "expected"),
    [
        ({"x-strata-edge": EDGE, "x-forwarded-for": "203.0.113.7"}, EDGE, "203.0.113.7"),
        ({"x-strata-edge": EDGE, "x-forwarded-for": "203.0.113.7, 10.0.0.1"}, EDGE, "203.0.113.7"),
        ({"x-strata-edge": EDGE, "x-forwarded-for": "2001:db8::1"}, EDGE, "2001:db8::1"),
        ({"x-strata-edge": "f" * 64, "x-forwarded-for": "203.0.113.7"}, EDGE, "192.0.2.1"),  # wrong token
        ({"x-forwarded-for": "203.0.113.7"}, EDGE, "192.0.2.1"),  # no token: anyone can send the header
        ({"x-strata-edge": EDGE, "x-forwarded-for": "203.0.113.7"}, None, "192.0.2.1"),  # no secret, no trust
        ({"x-strata-edge": EDGE, "x-forwarded-for": "not-an-ip"}, EDGE, "192.0.2.1"),
        ({"x-strata-edge": EDGE}, EDGE, "192.0.2.1"),
    ],
)
def test_x_forwarded_for_counts_only_with_the_edge_token(
    headers: dict[str, str], edge_token: str | None, expected: str
) -> None:
    assert trusted_client_address(headers, "192.0.2.1", edge_token) == expected


@pytest.mark.parametrize(
    ("subject", "address", "identity"),
    [
        ("u-1", "2001:db8::1", "sub:u-1"),
        (None, "198.51.100.7", "ip:198.51.100.7"),
        (None, "2001:db8:5:6:7:8:9:a", "ip:2001:db8:5:6::/64"),
        (None, "::ffff:198.51.100.7", "ip:198.51.100.7"),
    ],
)
def test_anonymous_callers_share_a_bucket_per_ipv4_address_or_ipv6_slash_64(
    subject: str | None, address: str, identity: str
) -> None:
    assert rate_limit_identity(subject, address) == identity


def test_two_addresses_of_one_ipv6_slash_64_spend_one_bucket() -> None:
    assert rate_limit_identity(None, "2001:db8:5:6::1") == rate_limit_identity(None, "2001:db8:5:6:ffff::2")
    assert rate_limit_identity(None, "2001:db8:5:6::1") != rate_limit_identity(None, "2001:db8:5:7::1")


def test_the_edge_token_is_the_settings_hmac_of_the_master_secret() -> None:
    token = Settings(_env_file=None, secret_key="s" * 32).edge_token()  # type: ignore[arg-type]
    headers = {"x-strata-edge": token, "x-forwarded-for": "198.51.100.2"}
    assert trusted_client_address(headers, "127.0.0.1", token) == "198.51.100.2"
    other = Settings(_env_file=None, secret_key="t" * 32).edge_token()  # type: ignore[arg-type]
    assert trusted_client_address(headers, "127.0.0.1", other) == "127.0.0.1"


def test_the_headers_take_the_structured_field_form() -> None:
    decision = asyncio.run(LeasedLimiter(InProcessShard(ShardState(), "a")).check("read:ip:x", RatePolicy(600, 60)))
    headers = dict(rate_limit_headers("read", decision))
    assert headers[b"ratelimit-policy"] == b'"read";q=600;w=60'
    assert re.fullmatch(rb'"read";r=599;t=\d+', headers[b"ratelimit"])
    assert headers[b"ratelimit"].endswith(b";t=1")  # 0.1 s to refill one token, rounded up


def test_limits_are_validated_settings() -> None:
    settings = Settings(_env_file=None, rate_limit_auth="5/30s", rate_limit_read="100/1")  # type: ignore[call-arg]
    assert settings.rate_limit("auth") == (5, 30.0)
    assert settings.rate_limit("read") == (100, 1.0)
    for bad in ("5 per minute", "0/60s", "10/0s", "-1/60s", ""):
        with pytest.raises(ValidationError, match="rate_limit_write"):
            Settings(_env_file=None, rate_limit_write=bad)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="not an IP network"):
        Settings(_env_file=None, rate_limit_exempt="10.0.0.0/8, localhost")  # type: ignore[call-arg]


def test_exempt_networks_match_the_client_address() -> None:
    settings = Settings(_env_file=None, rate_limit_exempt="10.0.0.0/8, ::1")  # type: ignore[call-arg]
    limits = GatewayRateLimits(settings, LeasedLimiter(InProcessShard(ShardState(), "a")), edge_token=None)
    assert limits.is_exempt("10.1.2.3") and limits.is_exempt("::1")
    assert not limits.is_exempt("127.0.0.2") and not limits.is_exempt("unknown")


# --- in process: the gateway app refuses before it validates -----------------------------------------------------


async def test_the_gateway_limits_login_before_validating_and_answers_429_with_the_headers() -> None:
    from strata.serve_apps.gateway import api

    settings = Settings(_env_file=None, rate_limit_auth="3/60s")  # type: ignore[call-arg]
    limits = GatewayRateLimits(settings, LeasedLimiter(InProcessShard(ShardState(), "a")), edge_token=None)
    previous = getattr(api.state, "rate_limits", None)
    api.state.rate_limits = limits
    try:
        transport = httpx.ASGITransport(app=api, client=("192.0.2.9", 4444))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            answers = [await client.post("/v1/auth/login", json={}) for _ in range(4)]
    finally:
        api.state.rate_limits = previous
    assert [a.status_code for a in answers] == [422, 422, 422, 429]  # no auth call: the body is never valid
    remaining = [re.fullmatch(r'"auth";r=(\d+);t=(\d+)', a.headers["RateLimit"]) for a in answers[:3]]
    assert [int(m.group(1)) for m in remaining if m] == [2, 1, 0]
    refused = answers[3]
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["status"] == 429 and refused.json()["limit_class"] == "auth"
    assert int(refused.headers["Retry-After"]) == math.ceil(60 / 3)
    assert refused.headers["RateLimit-Policy"] == '"auth";q=3;w=60'
    assert refused.headers["RateLimit"].startswith('"auth";r=0;')
    assert limits.rejections["auth"] == 1
