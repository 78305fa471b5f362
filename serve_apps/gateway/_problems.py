"""RFC 9457 problem details: the one shape of every error strata answers.

:func:`problem` answers from a route or an exception handler; :func:`problem_body`
gives the same body to the edge middleware, which answers some errors (413, 504,
500) before or around the application. :func:`problem_responses` documents them
in the OpenAPI document. A body never holds a stack trace, an exception's text
or an internal name: ``title`` and ``detail`` are written for the client, and
``request_id`` (also in ``instance``) is what an operator looks up in the logs.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://strata.dev/problems/"

TITLES: dict[int, tuple[str, str]] = {
    400: ("bad-request", "Bad Request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not Found"),
    405: ("method-not-allowed", "Method Not Allowed"),
    409: ("conflict", "Conflict"),
    413: ("payload-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported Media Type"),
    422: ("validation", "Request body or parameters are invalid"),
    429: ("too-many-requests", "Too Many Requests"),
    500: ("internal", "Internal Server Error"),
    503: ("service-unavailable", "Service Unavailable"),
    504: ("deadline-exceeded", "The request took longer than its deadline"),
}
"""Slug and title of the problems the edge itself answers, by status."""

_DESCRIPTIONS: dict[int, str] = {
    400: "Malformed request",
    401: "Missing, invalid, expired or revoked access token (`WWW-Authenticate` says which)",
    403: "The caller's roles lack the route's permission",
    404: "No such resource",
    409: "Conflicts with the current state (e.g. the email is taken)",
    413: "Request body larger than the gateway accepts",
    422: "Body or parameters fail validation, or a rule refuses them",
    429: "Rate limit or login backoff: retry after `Retry-After` seconds",
    503: "Overloaded or a dependency is down: retry after `Retry-After` seconds",
    504: "The request ran past its deadline and was cancelled",
}


def problem_body(
    status: int, slug: str, title: str, detail: str | None = None, request_id: str | None = None, **extra: Any
) -> dict[str, Any]:
    """The problem+json body; ``type`` is stable (``<base><slug>``), ``instance`` carries the request id."""
    body: dict[str, Any] = {"type": PROBLEM_BASE + slug, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if request_id:
        body["instance"] = f"urn:strata:request:{request_id}"
        body["request_id"] = request_id
    body.update(extra)
    return body


def problem(
    request: Request, status: int, slug: str, title: str, detail: str | None = None, **extra: Any
) -> JSONResponse:
    """A problem+json response for ``request`` (its request id included)."""
    request_id = getattr(request.state, "request_id", None)
    body = problem_body(status, slug, title, detail, request_id, **extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def status_problem(request: Request, status: int, detail: str | None = None, **extra: Any) -> JSONResponse:
    """The edge's own problem for ``status`` (slug and title from :data:`TITLES`)."""
    slug, title = TITLES.get(status, ("http-error", "HTTP error"))
    return problem(request, status, slug, title, detail, **extra)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route (or router) that may answer these problems: the OpenAPI side of :func:`problem`."""
    return {status: problem_response_object(status) for status in statuses}


def problem_response_object(status: int) -> dict[str, Any]:
    """An OpenAPI response object of a problem: ``$ref`` to the ``Problem`` schema (which _openapi.py adds)."""
    return {
        "description": _DESCRIPTIONS.get(status, TITLES.get(status, ("", "Error"))[1]),
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
