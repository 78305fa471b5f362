"""RFC 9457 problem details: the one shape of every error strata answers, wherever it is answered.

The gateway answers problems from its routes and its edge middleware, the TLS front from its own
configuration (when Serve behind it is down); both build them from here, so ``type``, ``title`` and
``instance`` mean the same everywhere. A body never holds a stack trace, an exception's text or an
internal name.
"""

from __future__ import annotations

from typing import Any

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://strata.dev/problems/"

TITLES: dict[int, tuple[str, str]] = {
    400: ("bad-request", "Bad Request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not Found"),
    405: ("method-not-allowed", "Method Not Allowed"),
    409: ("conflict", "Conflict"),
    412: ("precondition-failed", "Precondition Failed"),
    413: ("payload-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported Media Type"),
    422: ("validation", "Request body or parameters are invalid"),
    428: ("precondition-required", "Precondition Required"),
    429: ("too-many-requests", "Too Many Requests"),
    431: ("header-fields-too-large", "Request Header Fields Too Large"),
    500: ("internal", "Internal Server Error"),
    503: ("service-unavailable", "Service Unavailable"),
    504: ("deadline-exceeded", "The request took longer than its deadline"),
}
"""Slug and title of the problems the edge itself answers, by status."""


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
