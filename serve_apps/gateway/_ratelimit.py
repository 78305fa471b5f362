"""Rate limits at the edge: who the caller is, whether they may go on, and the headers that say so.

Every route has a rate-limit class in the routing table (``_access.py``):
``auth``, ``refresh``, ``read``, ``write`` or ``none``. A request of a limited class spends
one token of the bucket ``<class>:<identity>``, where the identity is the
verified token's subject (``sub:<user id>``) or, without one, the client address
(``ip:<address>``, where every address of an IPv6 /64 is one client:
:func:`~strata.schemas.client_key`). The buckets are shared by every gateway replica (token
buckets in the rate-limit actors, spent through small leases:
:mod:`strata.actors.ratelimit`).

The client address is the direct peer's, unless the request came through
strata's TLS front: the front replaces ``X-Forwarded-For`` with the client's
address and adds ``X-Strata-Edge`` with a token derived from the master secret
(:meth:`~strata.schemas.Settings.edge_token`). The gateway believes
``X-Forwarded-For`` only when that token matches; anyone else can send the
header, so it is ignored otherwise. The auth service's login throttle gets the
same address.

Responses of a limited route carry the IETF headers
(draft-ietf-httpapi-ratelimit-headers, structured-field form)::

    RateLimit-Policy: "read";q=600;w=60
    RateLimit: "read";r=598;t=1

``q`` requests per ``w`` seconds; ``r`` requests left, ``t`` seconds until the
allowance is whole again. Past it: ``429`` problem+json with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any, Literal

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from strata.actors import Backoff, keep_running
from strata.actors.ratelimit import Decision, LeasedLimiter, RatePolicy, ShardedLeases, ensure_rate_limit_shards
from strata.schemas import EDGE_TOKEN, RateLimitClass, Settings, TooManyRequests, client_key

logger = logging.getLogger(__name__)

LimitClass = Literal["auth", "refresh", "read", "write", "none"]
LIMITED_CLASSES: tuple[RateLimitClass, ...] = ("auth", "refresh", "read", "write")
EDGE_HEADER = "x-strata-edge"
_SWEEP_S = 1.0
_LEASE_TTL_S = 2.0


def trusted_client_address(headers: Mapping[str, str], peer: str | None, edge_token: str | None) -> str:
    """The client's address: ``X-Forwarded-For`` when ``X-Strata-Edge`` carries ``edge_token``, else ``peer``.

    Only the first entry of ``X-Forwarded-For`` counts (the front sets exactly
    one; a proxy after it may append); it must be an IP address.
    """
    presented = headers.get(EDGE_HEADER)
    if edge_token and presented and hmac.compare_digest(presented.encode(), edge_token.encode()):
        first = headers.get("x-forwarded-for", "").split(",")[0].strip()
        try:
            return str(ipaddress.ip_address(first))
        except ValueError:
            pass
    return peer or "unknown"


def rate_limit_identity(subject: str | None, address: str) -> str:
    """The identity a request is counted under: ``sub:<user id>`` with a verified subject, else ``ip:<client key>``
    (an IPv4 address, or the /64 of an IPv6 one: :func:`~strata.schemas.client_key`)."""
    return f"sub:{subject}" if subject else f"ip:{client_key(address)}"


def client_address(request: Request) -> str:
    """The trusted client address of ``request`` (worked out once per request)."""
    known = getattr(request.state, "client_address", None)
    if isinstance(known, str):
        return known
    limits: GatewayRateLimits | None = getattr(request.app.state, "rate_limits", None)
    edge_token = limits.edge_token if limits is not None else None
    address = trusted_client_address(request.headers, request.client.host if request.client else None, edge_token)
    request.state.client_address = address
    return address


class GatewayRateLimits:
    """The policies, the exemptions and the limiter of one gateway replica."""

    def __init__(
        self,
        settings: Settings,
        limiter: LeasedLimiter,
        *,
        edge_token: str | None,
        on_reject: Callable[[str], None] | None = None,
    ) -> None:
        self.policies: dict[str, RatePolicy] = {
            name: RatePolicy(*settings.rate_limit(name)) for name in LIMITED_CLASSES
        }
        self.exempt = settings.rate_limit_exempt_networks
        self.limiter = limiter
        self.edge_token = edge_token
        self.rejections: dict[str, int] = dict.fromkeys(LIMITED_CLASSES, 0)
        self._on_reject = on_reject
        self._sweeper: asyncio.Task[None] | None = None
        self._backoff = Backoff(first=0.5, cap=5.0)

    def is_exempt(self, address: str) -> bool:
        if not self.exempt:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.exempt)

    async def check(self, limit_class: RateLimitClass, identity: str) -> Decision:
        decision = await self.limiter.check(f"{limit_class}:{identity}", self.policies[limit_class])
        if not decision.allowed:
            self.rejections[limit_class] += 1
            if self._on_reject is not None:
                self._on_reject(limit_class)
        return decision

    def start(self) -> None:
        """Start giving back the unspent tokens of expired leases, every second."""
        self._sweeper = asyncio.get_running_loop().create_task(
            keep_running(self._sweep, self._backoff, self._sweep_failed), name="rate-limit-leases"
        )

    @property
    def running(self) -> bool:
        return self._sweeper is not None and not self._sweeper.done()

    async def _sweep(self) -> None:
        await self.limiter.return_expired()
        self._backoff.succeeded()
        await asyncio.sleep(_SWEEP_S)

    def _sweep_failed(self, exc: BaseException, pause: float) -> None:
        logger.warning("returning expired rate-limit leases failed: %s; retrying in %.1fs", exc, pause)

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None


def _replica_id() -> str:
    try:
        from ray import serve

        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # noqa: BLE001 - outside a Serve replica
        return "driver"


def start_rate_limits(settings: Settings) -> GatewayRateLimits:
    """A gateway replica's rate limits: the shard actors (found or created), a limiter, a rejection counter."""
    from ray.util.metrics import Counter

    handles = ensure_rate_limit_shards(settings.rate_limit_shards)
    source = ShardedLeases(handles, holder=_replica_id(), fraction=settings.rate_limit_lease_fraction)
    rejected = Counter(
        "strata_rate_limit_rejections",
        description="Requests refused with 429 by the gateway's rate limits, by rate-limit class.",
        tag_keys=("class",),
    )
    edge_token = settings.edge_token() if settings.holds_secret(EDGE_TOKEN) else None
    limits = GatewayRateLimits(
        settings,
        LeasedLimiter(source, lease_ttl_s=_LEASE_TTL_S),
        edge_token=edge_token,
        on_reject=lambda limit_class: rejected.inc(tags={"class": limit_class}),
    )
    limits.start()
    return limits


async def enforce_rate_limit(request: Request, limit_class: LimitClass, subject: str | None) -> None:
    """Spend one request of ``limit_class`` for the caller (``subject``, else the client address).

    Raises :class:`~strata.schemas.TooManyRequests` past the limit; the decision
    is kept on ``request.state.rate_limit`` for :class:`RateLimitHeaders`.
    """
    limits: GatewayRateLimits | None = getattr(request.app.state, "rate_limits", None)
    if limit_class == "none" or limits is None:
        return
    address = client_address(request)
    if limits.is_exempt(address):
        return
    decision = await limits.check(limit_class, rate_limit_identity(subject, address))
    request.state.rate_limit = (limit_class, decision)
    if not decision.allowed:
        raise TooManyRequests(
            f"rate limit of the {limit_class!r} class exceeded ({decision.policy})",
            retry_after=decision.retry_after_s,
            limit_class=limit_class,
        )


def rate_limit_headers(limit_class: str, decision: Decision) -> list[tuple[bytes, bytes]]:
    """``RateLimit-Policy`` and ``RateLimit`` for ``decision``."""
    policy = decision.policy
    window = int(policy.window_s) if float(policy.window_s).is_integer() else math.ceil(policy.window_s)
    reset = math.ceil(decision.reset_s)
    return [
        (b"ratelimit-policy", f'"{limit_class}";q={policy.quota};w={window}'.encode()),
        (b"ratelimit", f'"{limit_class}";r={max(0, decision.remaining)};t={reset}'.encode()),
    ]


class RateLimitHeaders:
    """ASGI middleware: adds the ``RateLimit`` headers to a response when its request was rate-limited."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                verdict = state.get("rate_limit")
                if verdict is not None:
                    message["headers"] = [*message.get("headers", ()), *rate_limit_headers(*verdict)]
            await send(message)

        await self.app(scope, receive, send_with_headers)
