"""The gateway: strata's only HTTP application (FastAPI ingress).

It answers liveness and readiness itself, verifies access tokens locally
(JWKS cached from the auth service, revocations from Kafka), rate-limits, and
routes each request one hop down to a service through its typed client.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from strata.actors.positions import SessionPositions, SharedPositions, ensure_position_ledgers
from strata.schemas import CONSISTENCY_TOKEN_KEY, DomainError, Settings
from strata.serve_apps._faults import FaultInjectable, ReplicaFaults, replica_id
from strata.serve_apps._logging import route_strata_logs_to_serve
from strata.serve_apps._loop import check_event_loop
from strata.serve_apps.gateway._access import PermissionCache, authorize
from strata.serve_apps.gateway._audit_routes import router as audit_router
from strata.serve_apps.gateway._auth_routes import router as auth_router
from strata.serve_apps.gateway._consistency import ConsistencyTokens, TokenSigner
from strata.serve_apps.gateway._data_routes import MERGE_PATCH_MODELS
from strata.serve_apps.gateway._data_routes import router as data_router
from strata.serve_apps.gateway._deps import service_clients
from strata.serve_apps.gateway._hygiene import EdgePolicy, RequestHygiene
from strata.serve_apps.gateway._metrics import RequestMetrics
from strata.serve_apps.gateway._openapi import install_openapi
from strata.serve_apps.gateway._problems import problem, status_problem
from strata.serve_apps.gateway._ratelimit import RateLimitHeaders, start_rate_limits
from strata.serve_apps.gateway._readiness import ReadinessCache, outbox_services, readiness, readyz_response
from strata.serve_apps.gateway._revocations import RevocationFeed, Revocations
from strata.serve_apps.gateway._tokens import JwksCache, TokenVerifier
from strata.serve_apps.gateway._users_routes import router as users_router

logger = logging.getLogger(__name__)

api = FastAPI(
    title="strata",
    version="0.1.0",
    docs_url=None,
    redoc_url=None,
    openapi_url="/openapi.json",
    # Every route's permission is enforced here, from the one table in _access.py.
    dependencies=[Depends(authorize)],
)
# A read scope per request: Strata-Consistency in and out, the session's newest commit remembered.
api.add_middleware(ConsistencyTokens)
# The RateLimit headers of a rate-limited request (the limit itself is checked in `authorize`).
api.add_middleware(RateLimitHeaders)


# Outermost: request id, body limit, deadline, CORS, security headers, 500s, access log and metrics.
api.add_middleware(RequestHygiene)


@api.exception_handler(StarletteHTTPException)
async def http_problem(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """404, 405 (with ``Allow``), 413 and other HTTP errors of the framework, as problem+json."""
    detail = None if exc.status_code in (404, 405) else str(exc.detail)  # those two say all in their title
    response = status_problem(request, exc.status_code, detail)
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


@api.exception_handler(DomainError)
async def domain_problem(request: Request, exc: DomainError) -> JSONResponse:
    """A service's (or the edge's own) client-facing error, as problem+json with the headers it calls for."""
    extra = {k: v for k, v in exc.extra.items() if k != "error" and isinstance(v, str | int | float | bool)}
    response = problem(request, exc.status, exc.slug, exc.title, exc.detail or None, **extra)
    if exc.status == 401:
        challenge = 'Bearer realm="strata"'
        error = exc.extra.get("error")
        if error:
            description = (exc.detail or exc.title).replace('"', "'")
            challenge += f', error="{error}", error_description="{description}"'
        response.headers["WWW-Authenticate"] = challenge
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    headers = exc.extra.get("headers")
    if isinstance(headers, dict):  # e.g. Accept-Patch on a 415 (never in the body: not a scalar)
        for name, value in headers.items():
            response.headers[str(name)] = str(value)
    return response


@api.exception_handler(RequestValidationError)
async def validation_problem(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
    return problem(request, 422, "validation", "Request body or parameters are invalid", errors=errors)


async def _fetch_jwks() -> dict[str, Any]:
    return (await service_clients(api.state).auth.jwks()).model_dump()


@api.get(
    "/readyz",
    tags=["operations"],
    summary="Readiness: PostgreSQL, Kafka and every app (details with `ops:read`), checked at most once a second",
)
async def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    return await readyz_response(
        request, state.readiness, state.readyz_networks, state.replica_id, state.revocation_progress
    )


api.include_router(auth_router)
api.include_router(users_router)
api.include_router(audit_router)
api.include_router(data_router)
install_openapi(api, extra_models=MERGE_PATCH_MODELS)  # /openapi.json completed from the routing table, and /docs


@serve.deployment  # its options are in cluster/serve.yaml, the one place for them
@serve.ingress(api)
class Gateway(FaultInjectable):
    """FastAPI ingress replica."""

    async def __init__(self) -> None:  # type: ignore[misc]  # Serve awaits an async constructor
        route_strata_logs_to_serve()
        self._settings = Settings()
        api.state.edge_policy = EdgePolicy.from_settings(self._settings)
        api.state.settings = self._settings  # the limits the OpenAPI document states
        api.state.data_max_page_size = self._settings.data_max_page_size
        api.state.request_recorder = RequestMetrics()
        # A session's newest commit matters while a standby in rotation may lag it: at most the lag bound.
        ttl_s = 2 * self._settings.replica_max_lag_s + 1
        # Without standbys every read is the primary's: no position to share, so no ledger call on any request.
        ledgers = ensure_position_ledgers(ttl_s) if self._settings.database_replica_urls else []
        api.state.session_positions = SharedPositions(SessionPositions(ttl_s), ledgers)
        # Given it by `strata up` (credentials/gateway.json), shared by every replica; else a key of this replica's
        # own (app tests, given no secrets).
        if self._settings.holds_secret(CONSISTENCY_TOKEN_KEY):
            api.state.consistency_signer = TokenSigner(self._settings.consistency_token_key())
        self._faults = ReplicaFaults(self._settings.fault_injection)
        api.state.verifier = TokenVerifier(self._settings, JwksCache(_fetch_jwks))
        # One typed client per service, for this replica's lifetime (routes get them through gateway/_deps.py).
        clients = service_clients(api.state)
        api.state.permissions = PermissionCache(clients.users.role_permissions)
        # /readyz asks each service with an outbox for its readiness.
        outboxes = outbox_services([clients.auth, clients.users, clients.data, clients.audit])
        settings = self._settings
        api.state.readiness = ReadinessCache(lambda: readiness(settings, outboxes), ttl_s=settings.readyz_cache_s)
        api.state.readyz_networks = self._settings.readyz_detail_network_list
        api.state.replica_id = serve.get_replica_context().replica_id.unique_id
        api.state.rate_limits = start_rate_limits(self._settings)
        revocations = Revocations(horizon_s=self._settings.access_token_ttl_s + self._settings.token_leeway_s + 60)
        api.state.revocations = revocations
        self._feed = RevocationFeed(self._settings, revocations)
        api.state.revocation_progress = self._feed.progress
        self._feed.start()

    async def check_health(self) -> None:
        """Serve calls this every 5 s: the loop answers, and the revocation feed runs and has heard from Kafka
        within ``revocation_feed_stale_after_s`` (a replica whose feed went stale refuses authenticated requests,
        and must leave rotation). A feed still catching up passes: see ``FeedProgress``."""
        self._faults.check_health()
        await check_event_loop()
        if not self._feed.running:
            raise RuntimeError("the revocation feed stopped")
        problem = self._feed.progress.health_problem()
        if problem is not None:
            raise RuntimeError(problem)

    async def revocation_feed_state(self) -> dict[str, Any]:
        """This replica's id and its feed's state (a handle method for operators and tests, not a route)."""
        progress = self._feed.progress
        return {
            "replica": replica_id(),
            "state": progress.state.value,
            "silence_s": progress.silence_s(),
            "applied": self._feed.applied,
            "foreign": self._feed.foreign,
            "last_error": self._feed.last_error,
        }

    @api.get("/healthz", tags=["operations"], summary="Liveness: the gateway answers")
    async def healthz(self) -> dict[str, str]:
        await self._faults.passed()  # the gateway's fault point (tests only)
        return {"status": "ok"}


app: Any = Gateway.bind()  # type: ignore[attr-defined]  # @serve.deployment adds bind()
