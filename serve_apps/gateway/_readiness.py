"""Readiness of the whole system as the gateway sees it: PostgreSQL, Kafka and every Serve app.

PostgreSQL is checked through the data app (gateway -> data -> PostgreSQL, two
hops), Kafka with a metadata request, the apps through Serve's status; all at
once, each within a short timeout, so ``/readyz`` answers fast even when a
component hangs.

``/readyz`` is public (load balancers and orchestrators probe it without a
token), so a check is neither run per call nor shown to everyone:

- :class:`ReadinessCache` reuses a replica's last check for
  ``readyz_cache_s`` (1 s) and lets callers arriving during a check await the
  one in flight: however many call, a replica runs at most one check per
  ``readyz_cache_s``.
- :func:`readyz_response` gives anonymous callers ``{"status"}`` alone (no
  component, address or error); the details go to a caller whose access token
  grants ``ops:read`` (:data:`DETAILS_PERMISSION`) or whose address is in
  ``readyz_detail_networks``. Details include ``check``: this replica's id,
  how many checks it has run and the answer's age, so the cache can be seen
  working.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from ray import serve

from strata.actors import NAMESPACE
from strata.actors.kafka import kafka_unavailable_reason
from strata.contracts import ServiceClient
from strata.schemas import DatabaseCheck, InvalidToken, ServiceReadiness, Settings, app_names, outbox_owners
from strata.serve_apps.gateway._access import PermissionCache
from strata.serve_apps.gateway._ratelimit import client_address
from strata.serve_apps.gateway._revocations import FeedProgress, FeedState, Revocations
from strata.serve_apps.gateway._tokens import TokenVerifier

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 3.0
_RETRY_UNAVAILABLE_S = 0.1
ACTOR_PREFIXES = ("strata-pg-", "strata-relay-")
"""Named actors shown in ``/readyz``: PostgreSQL pool actors and outbox relays (Ray restarts them when they die)."""


def outbox_services(clients: Iterable[ServiceClient]) -> dict[str, ServiceClient]:
    """A client of each service with an outbox, whose readiness ``/readyz`` asks: the one of ``clients`` that calls
    it, else a plain :class:`ServiceClient` of it (``readiness`` is a call every service answers)."""
    by_app = {client.service: client for client in clients}
    return {
        spec.name: by_app[spec.name] if spec.name in by_app else ServiceClient(app=spec.name)
        for spec in outbox_owners()
    }


async def check_service(client: ServiceClient) -> ServiceReadiness:
    """One service's readiness report (its database path and outbox backlog), one hop away."""
    try:
        return await asyncio.wait_for(client.readiness(), timeout=CHECK_TIMEOUT_S)
    except TimeoutError:
        return ServiceReadiness(database=DatabaseCheck(status="down", error="timeout"))
    except Exception as exc:  # noqa: BLE001 - any failure on the path means "not ready"
        return ServiceReadiness(database=DatabaseCheck(status="down", error=type(exc).__name__))


async def check_kafka(settings: Settings) -> dict[str, Any]:
    reason = await kafka_unavailable_reason(settings, "gateway", wait_s=CHECK_TIMEOUT_S)
    return {"status": "up"} if reason is None else {"status": "down", "error": reason}


def _app_states() -> dict[str, dict[str, Any]]:
    status = serve.status()
    return {
        name: {"status": app.status.value if hasattr(app.status, "value") else str(app.status)}
        for name, app in status.applications.items()
    }


async def check_apps() -> dict[str, dict[str, Any]]:
    try:
        states = await asyncio.wait_for(asyncio.to_thread(_app_states), timeout=CHECK_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001
        return {name: {"status": "UNKNOWN", "error": type(exc).__name__} for name in app_names()}
    return {name: states.get(name, {"status": "NOT_DEPLOYED"}) for name in app_names()}


def _named_actors() -> list[str]:
    import ray

    named: list[Any] = ray.util.list_named_actors(all_namespaces=True)  # [{"name", "namespace"}]
    return sorted(a["name"] for a in named if a["namespace"] == NAMESPACE and a["name"].startswith(ACTOR_PREFIXES))


async def _actor_status(name: str) -> dict[str, Any]:
    """``up`` when the actor answers within the check's time; ``restarting`` while Ray says it is unavailable.

    Ray's ``ActorUnavailableError`` means "temporarily unavailable, may be available later": the actor is
    restarting, or this process has not yet heard that it is back (each process learns an actor's new
    address from Ray's pubsub, some later than others). Such a call is asked again until the check's time is
    up, so an actor Ray has restarted shows ``up`` as soon as this process can reach it.
    """
    import ray

    loop = asyncio.get_running_loop()
    deadline = loop.time() + CHECK_TIMEOUT_S
    try:
        actor: Any = await asyncio.to_thread(ray.get_actor, name, NAMESPACE)
        while True:
            try:
                await asyncio.wait_for(actor.stats.remote(), timeout=max(0.0, deadline - loop.time()))
                return {"status": "up"}
            except ray.exceptions.ActorUnavailableError:
                if deadline - loop.time() <= _RETRY_UNAVAILABLE_S:
                    return {"status": "restarting", "error": "ActorUnavailableError"}
                await asyncio.sleep(_RETRY_UNAVAILABLE_S)
    except TimeoutError:
        return {"status": "down", "error": "timeout"}
    except Exception as exc:  # noqa: BLE001 - dead or unreachable both mean "not up now"
        return {"status": "down", "error": type(exc).__name__}


async def check_actors() -> dict[str, dict[str, Any]]:
    """Each pool and relay actor: ``up``, ``restarting`` (Ray brings it back) or ``down`` (see :func:`_actor_status`).

    Shown, not part of ``ready``: requests do not wait on relays, and a pool actor that the request path uses
    shows in the PostgreSQL check already.
    """
    try:
        names = await asyncio.wait_for(asyncio.to_thread(_named_actors), timeout=CHECK_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001
        return {"*": {"status": "unknown", "error": type(exc).__name__}}
    statuses = await asyncio.gather(*(_actor_status(name) for name in names))
    return dict(zip(names, statuses, strict=True))


async def readiness(settings: Settings, services: Mapping[str, ServiceClient]) -> tuple[bool, dict[str, Any]]:
    """``(ready, body)``: ready when PostgreSQL and Kafka are up and every app is RUNNING.

    ``services`` are the clients of the services with an outbox (:func:`outbox_services`), the data service among
    them: its path to PostgreSQL is the one shown.
    """
    with_outbox = list(services)
    kafka, apps, actors, *checked = await asyncio.gather(
        check_kafka(settings),
        check_apps(),
        check_actors(),
        *(check_service(services[app]) for app in with_outbox),
    )
    reports: dict[str, ServiceReadiness] = dict(zip(with_outbox, checked, strict=True))
    # PostgreSQL as the data service reaches it: gateway -> data -> PostgreSQL, two hops.
    postgres = reports["data"].database.model_dump(exclude_none=True)
    if reports["data"].standbys:  # and its standbys, as the data service routes reads to them
        postgres["standbys"] = [standby.model_dump() for standby in reports["data"].standbys]
    outbox = {
        app: report.outbox.model_dump(exclude_none=True) if report.outbox is not None else {"error": "unknown"}
        for app, report in reports.items()
    }
    ready = (
        postgres.get("status") == "up"
        and kafka.get("status") == "up"
        and all(app.get("status") == "RUNNING" for app in apps.values())
    )
    down = [name for name, c in (("postgres", postgres), ("kafka", kafka)) if c.get("status") != "up"]
    down += [name for name, app in apps.items() if app.get("status") != "RUNNING"]
    body = {
        "status": "ready" if ready else "unready",
        "down": down,
        "components": {"postgres": postgres, "kafka": kafka, "apps": apps, "outbox": outbox, "actors": actors},
    }
    return ready, body


Answer = tuple[bool, dict[str, Any]]
DETAILS_PERMISSION = "ops:read"
"""The permission whose holders read ``/readyz``'s details (granted to the ``admin`` and ``operator`` roles)."""


class ReadinessCache:
    """A replica's last readiness check, reused for ``ttl_s``; one check at a time (single flight).

    A caller finding no answer younger than ``ttl_s`` starts a check, unless one
    is running: then it awaits that one. The age counts from the end of the
    check, so a replica runs at most one check per ``ttl_s`` plus a check's
    duration, whatever the call rate. A caller that goes away (cancelled) does
    not cancel the check others await. ``runs`` counts the checks started.
    """

    __slots__ = ("_answer", "_check", "_checked_at", "_clock", "_in_flight", "_ttl_s", "runs")

    def __init__(
        self, check: Callable[[], Awaitable[Answer]], *, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._check = check
        self._ttl_s = ttl_s
        self._clock = clock
        self._answer: Answer | None = None
        self._checked_at = -float("inf")
        self._in_flight: asyncio.Task[Answer] | None = None
        self.runs = 0

    @property
    def age_s(self) -> float:
        """Seconds since the last check ended (infinite before the first)."""
        return self._clock() - self._checked_at

    async def answer(self) -> Answer:
        """``(ready, details)``: the cached answer while fresh, else that of the check in flight or a new one."""
        if self._answer is not None and self.age_s < self._ttl_s:
            return self._answer
        if self._in_flight is None:
            self._in_flight = asyncio.get_running_loop().create_task(self._run(), name="readiness-check")
        return await asyncio.shield(self._in_flight)

    async def _run(self) -> Answer:
        self.runs += 1
        try:
            answer = await self._check()
            self._answer, self._checked_at = answer, self._clock()
            return answer
        finally:
            self._in_flight = None


def in_networks(address: str, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    """Whether ``address`` (an IP address, or ``unknown``) lies in one of ``networks``."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


async def may_read_details(request: Request, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    """Whether the caller of ``/readyz`` gets the details: from a trusted network, or with ``ops:read``.

    No ``Authorization`` header: anonymous (a probe). A token that is sent must be valid: a refused one answers
    401 (:class:`~strata.schemas.InvalidToken`), as on any other route, so an operator learns why.
    """
    if networks and in_networks(client_address(request), networks):
        return True
    header = request.headers.get("authorization")
    if not header:
        return False
    verifier: TokenVerifier = request.app.state.verifier
    caller = await verifier.verify_header(header)
    revocations: Revocations = request.app.state.revocations
    refusal = revocations.refusal(caller)
    if refusal is not None:
        raise InvalidToken(refusal, error="invalid_token")
    permissions: PermissionCache = request.app.state.permissions
    return DETAILS_PERMISSION in await permissions.permissions(caller.roles)


async def readyz_response(
    request: Request,
    cache: ReadinessCache,
    networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network],
    replica: str,
    feed: FeedProgress,
) -> JSONResponse:
    """``/readyz``: 200 or 503, with the status alone or (operators) the details and the ``check`` counters.

    The answering replica is ready only once its revocation feed is current: until then it refuses
    authenticated requests, so `strata up`, which waits for ``/readyz``, waits for that too.
    """
    detailed = await may_read_details(request, networks)
    ready, body = await cache.answer()
    feed_state = feed.state
    if feed_state is not FeedState.CURRENT:
        ready, body = False, {**body, "status": "unready"}
    components = {**body.get("components", {}), "revocation_feed": {"status": feed_state.value, "replica": replica}}
    body = {**body, "components": components}
    status = 200 if ready else 503
    headers = {"Cache-Control": "no-store"}
    if not detailed:
        return JSONResponse({"status": body["status"]}, status_code=status, headers=headers)
    check = {"replica": replica, "runs": cache.runs, "age_s": round(max(0.0, cache.age_s), 3)}
    return JSONResponse({**body, "check": check}, status_code=status, headers=headers)
