"""RFC 9457 problem details as the gateway answers them.

:func:`problem` answers from a route or an exception handler. The shape itself,
:func:`~strata.schemas.problem_body`, lives in ``strata.schemas``: the edge
middleware answers some errors (413, 504, 500) before or around the application
with it, and the TLS front with the same body. :func:`problem_responses`
documents them in the OpenAPI document. ``title`` and ``detail`` are written
for the client, and ``request_id`` (also in ``instance``) is what an operator
looks up in the logs.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from strata.schemas import PROBLEM_JSON, TITLES, problem_body

_DESCRIPTIONS: dict[int, str] = {
    400: "Malformed request (e.g. a page cursor this listing did not make)",
    401: "Missing, invalid, expired or revoked access token (`WWW-Authenticate` says which)",
    403: "The caller's roles lack the route's permission",
    404: "No such resource",
    409: "Conflicts with the current state (e.g. the email is taken, or an Idempotency-Key's first request still runs)",
    412: "`If-Match` names no current version: the resource changed since you read it (GET it again)",
    413: "Request body larger than the gateway accepts",
    415: "The body's media type is not one the route takes (`Accept-Patch` lists those of a PATCH)",
    422: "Body or parameters fail validation, or a rule refuses them",
    428: "This change must be conditional: send `If-Match` with the ETag you read (or `*`)",
    429: "Rate limit or login backoff: retry after `Retry-After` seconds",
    503: "Overloaded or a dependency is down: retry after `Retry-After` seconds",
    504: "The request ran past its deadline and was cancelled",
}


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
