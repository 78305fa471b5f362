"""RFC 9457 problem details: the one shape of every error strata answers."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://strata.dev/problems/"


def problem(
    request: Request, status: int, slug: str, title: str, detail: str | None = None, **extra: Any
) -> JSONResponse:
    """A problem+json response; ``type`` is stable (``<base><slug>``), ``instance`` carries the request id."""
    body: dict[str, Any] = {"type": PROBLEM_BASE + slug, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        body["instance"] = f"urn:strata:request:{request_id}"
        body["request_id"] = request_id
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)
