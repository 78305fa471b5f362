"""Request hygiene at the edge: one ASGI middleware around the whole gateway application.

For every HTTP request, in this order:

1. **Request id.** A well-formed ``X-Request-ID`` (8-128 of ``A-Za-z0-9._:-``)
   is kept, anything else is replaced by a new one. It goes to
   ``request.state.request_id`` (routes pass it to the services, which put it in
   the ``requestid`` of the events they record), into Serve's request context
   (so Serve's log lines and the handle calls made for this request carry it),
   and back to the client in ``X-Request-ID``.
2. **Body limit** (``max_body_bytes``): a ``Content-Length`` above it is answered
   413 at once; a body streamed without one is counted as it is read and cut
   off with 413 when it passes the limit.
3. **Deadline** (``request_deadline_s``, or less when the client asks with
   ``Request-Timeout`` / ``X-Request-Timeout``: ``2.5``, ``2.5s`` or ``250ms``):
   past it the work is cancelled, handle calls still in flight included, and
   the answer is 504.
4. **CORS**, for origins on the ``cors_allow_origins`` list only (Starlette's
   ``CORSMiddleware``); other origins get no CORS headers, so browsers refuse.
5. **Security headers** on every response: ``X-Content-Type-Options: nosniff``,
   ``Referrer-Policy: no-referrer``, ``X-Frame-Options: DENY`` with
   ``Content-Security-Policy: frame-ancestors 'none'``, HSTS, and
   ``Cache-Control: no-store`` unless the route set its own.
6. **No leaks.** An exception nothing else handled becomes a 500 problem with
   the request id only; its text and traceback go to the log.
7. **One JSON log line** per request (logger ``strata.access``: ``request_id``,
   ``http_method``, ``http_route`` (the route template), ``http_status``,
   ``duration_ms``) and the request metrics of :mod:`._metrics`.

The limits come from ``app.state.edge_policy`` (an :class:`EdgePolicy`, set when
a replica starts), the metrics recorder from ``app.state.request_recorder``.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
import math
import re
import time
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from ray.serve import context as serve_context
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from strata.schemas import PROBLEM_JSON, TITLES, Settings, problem_body
from strata.serve_apps.gateway._metrics import UNMATCHED, RequestRecorder

access_log = logging.getLogger("strata.access")
logger = logging.getLogger(__name__)

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
"""A request id strata accepts from a client (anything else is replaced)."""
TIMEOUT_HEADERS = ("request-timeout", "x-request-timeout")
_TIMEOUT_VALUE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*$")

SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("content-security-policy", "frame-ancestors 'none'"),
    ("strict-transport-security", "max-age=63072000"),
)
CORS_ALLOW_HEADERS = (
    "Authorization",
    "Content-Type",
    "X-Request-ID",
    "Request-Timeout",
    "X-Request-Timeout",
    "If-Match",
    "If-None-Match",
    "Idempotency-Key",
    "Strata-Consistency",
)
CORS_EXPOSE_HEADERS = (
    "X-Request-ID",
    "Retry-After",
    "RateLimit",
    "RateLimit-Policy",
    "WWW-Authenticate",
    "ETag",
    "Location",
    "Idempotent-Replayed",
    "Accept-Patch",
    "Strata-Consistency",
    "Strata-Staleness",
)
CORS_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
JSON_ENVELOPE_DEPTH = 4
"""Levels a body may add around the deepest value a service bounds: ``{"items": [{"attributes": {...}}]}``, and one
to spare so that the service, not the edge, answers a depth just past its limit (its problem says where)."""


@dataclasses.dataclass(frozen=True, slots=True)
class EdgePolicy:
    """The limits the middleware enforces (from :class:`~strata.schemas.Settings`)."""

    max_body_bytes: int = 64 * 1024
    deadline_s: float = 10.0
    cors_allow_origins: tuple[str, ...] = ()
    max_json_depth: int = 16 + JSON_ENVELOPE_DEPTH
    """Deepest JSON body any route takes (see ``_json_bodies.py``): an item's attributes inside a batch."""

    @classmethod
    def from_settings(cls, settings: Settings) -> EdgePolicy:
        return cls(
            max_body_bytes=settings.max_body_bytes,
            deadline_s=settings.request_deadline_s,
            cors_allow_origins=tuple(settings.cors_allow_origins),
            max_json_depth=settings.data_max_json_depth + JSON_ENVELOPE_DEPTH,
        )


class BodyTooLarge(StarletteHTTPException):
    """The request body passed ``max_body_bytes`` while being read (answered 413)."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail="The request body is larger than this API accepts.")


def accepted_request_id(value: str | None) -> str | None:
    """``value`` if it is a well-formed request id, else ``None``."""
    return value if value is not None and REQUEST_ID.match(value) else None


def new_request_id() -> str:
    return uuid.uuid4().hex


def requested_deadline(headers: Headers, ceiling_s: float) -> float:
    """The request's deadline in seconds: the client's ``Request-Timeout`` if shorter than ``ceiling_s``.

    A value without a unit is in seconds (``2.5``); ``s`` and ``ms`` suffixes
    are understood. Malformed or non-positive values are ignored: the ceiling
    applies.
    """
    for name in TIMEOUT_HEADERS:
        raw = headers.get(name)
        if raw is None:
            continue
        match = _TIMEOUT_VALUE.match(raw)
        if match is None:
            continue
        value = float(match.group(1)) / (1000.0 if match.group(2) == "ms" else 1.0)
        if value > 0 and math.isfinite(value):
            return min(value, ceiling_s)
    return ceiling_s


def _serve_context() -> Any:
    """Serve's request context of this request (private API), or ``None`` outside a Serve request."""
    try:
        context: Any = serve_context._serve_request_context.get()
    except AttributeError:  # private API moved: behave as outside Serve
        return None
    return context


def _serve_context_request_id() -> str:
    """The request id in Serve's request context (the one Serve echoes), or ``""`` outside a Serve request."""
    current = _serve_context()
    return str(current.request_id or "") if current is not None else ""


def _bind_serve_request_id(request_id: str) -> contextvars.Token[Any] | None:
    """Make ``request_id`` the id of Serve's request context for this request (logs, handle calls)."""
    current = _serve_context()
    if current is None or current.request_id == request_id:
        return None
    token: contextvars.Token[Any] = serve_context._serve_request_context.set(
        dataclasses.replace(current, request_id=request_id)
    )
    return token


def _unbind_serve_request_id(token: contextvars.Token[Any] | None) -> None:
    if token is None:
        return
    try:
        serve_context._serve_request_context.reset(token)
    except (ValueError, RuntimeError):  # reset from another context: nothing left to undo there
        pass


def _cancel_handle_calls() -> int:
    """Cancel the handle calls this request still has in flight (Serve tracks them per ingress request)."""
    current = _serve_context()
    if current is None or not current._internal_request_id:
        return 0
    try:
        in_flight_of: Any = serve_context._get_in_flight_requests
        in_flight = list(in_flight_of(current._internal_request_id).values())
        for result in in_flight:
            result.cancel()
    except Exception:  # best effort: the awaiting task is cancelled either way
        logger.debug("could not cancel in-flight handle calls", exc_info=True)
        return 0
    return len(in_flight)


async def _send_problem(
    send: Send, status: int, request_id: str, detail: str | None = None, headers: Sequence[tuple[str, str]] = ()
) -> None:
    slug, title = TITLES[status]
    body = orjson.dumps(problem_body(status, slug, title, detail, request_id))
    raw_headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
        *((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


def _content_length(headers: Headers) -> int | None:
    raw = headers.get("content-length")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


class RequestHygiene:
    """The edge middleware (see the module docstring); add it as the outermost of the gateway's middlewares."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._cors: tuple[tuple[str, ...], ASGIApp] | None = None

    def _cors_app(self, origins: tuple[str, ...]) -> ASGIApp:
        if self._cors is None or self._cors[0] != origins:
            cors = CORSMiddleware(
                self.app,
                allow_origins=list(origins),
                allow_methods=list(CORS_METHODS),
                allow_headers=list(CORS_ALLOW_HEADERS),
                expose_headers=list(CORS_EXPOSE_HEADERS),
                max_age=600,
            )
            self._cors = (origins, cors)
        return self._cors[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        app_state = getattr(scope.get("app"), "state", None)
        policy: EdgePolicy = getattr(app_state, "edge_policy", None) or EdgePolicy()
        recorder: RequestRecorder | None = getattr(app_state, "request_recorder", None)
        headers = Headers(scope=scope)

        serve_id = _serve_context_request_id()
        request_id = accepted_request_id(headers.get("x-request-id")) or accepted_request_id(serve_id)
        request_id = request_id or new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        # Serve's proxy echoes its own id in X-Request-ID; add ours only where it differs (or outside Serve).
        echo_id = request_id != serve_id
        status = 500
        response_started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                out = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS:
                    if name not in out:
                        out[name] = value
                if "cache-control" not in out:
                    out["cache-control"] = "no-store"
                if echo_id:
                    out["x-request-id"] = request_id
            await send(message)

        received = 0

        async def receive_with_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > policy.max_body_bytes:
                    raise BodyTooLarge()
            return message

        origin = headers.get("origin")
        app = self._cors_app(policy.cors_allow_origins) if origin in policy.cors_allow_origins else self.app
        token = _bind_serve_request_id(request_id)
        timeout = asyncio.timeout(requested_deadline(headers, policy.deadline_s))
        try:
            length = _content_length(headers)
            if length is not None and length > policy.max_body_bytes:
                await _send_problem(send_with_headers, 413, request_id, BodyTooLarge().detail)
            else:
                async with timeout:
                    await app(scope, receive_with_limit, send_with_headers)
        except TimeoutError:
            if timeout.expired():
                cancelled = _cancel_handle_calls()
                logger.warning("deadline passed; cancelled %d handle call(s)", cancelled)
                if not response_started:
                    await _send_problem(
                        send_with_headers, 504, request_id, "The request was cancelled at its deadline."
                    )
            else:
                await self._internal_error(send_with_headers, request_id, response_started)
        except BodyTooLarge as exc:
            if not response_started:
                await _send_problem(send_with_headers, 413, request_id, exc.detail)
        except Exception:  # noqa: BLE001 - any error becomes a 500 without internals; the log has the traceback
            await self._internal_error(send_with_headers, request_id, response_started)
        except asyncio.CancelledError:  # the client went away (Serve cancels the request): log it as 499
            if not response_started:
                status = 499
            raise
        finally:
            duration_s = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            method = scope.get("method", "")
            if recorder is not None:
                try:
                    recorder.record(template, method, status, duration_s)
                except Exception:  # metrics never fail a request
                    logger.debug("request metrics not recorded", exc_info=True)
            access_log.info(
                "%s %s %d %.1fms",
                method,
                template,
                status,
                duration_s * 1000,
                extra={
                    "request_id": request_id,
                    "http_method": method,
                    "http_route": template,
                    "http_status": status,
                    "duration_ms": round(duration_s * 1000, 2),
                },
            )
            _unbind_serve_request_id(token)  # after the log line, which Serve stamps with its context's id

    @staticmethod
    async def _internal_error(send: Send, request_id: str, response_started: bool) -> None:
        logger.error("unhandled error in request %s", request_id, exc_info=True)
        if not response_started:
            await _send_problem(send, 500, request_id)
