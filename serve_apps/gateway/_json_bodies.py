"""JSON request bodies at the edge: parsed once with orjson, their nesting bounded before any model sees them.

FastAPI parses a JSON body with the standard library's ``json.loads`` and validates it with pydantic. Hostile
nesting (``[[[[...`` for the whole body) is refused there, but late and vaguely: a few hundred levels pass the
parser and reach pydantic's recursion guard (a 422 whose ``loc`` lists every level), a thousand make ``json.loads``
raise ``RecursionError`` (a 400 "error parsing the body"), and what passes both would travel to a service by
pickle, which recurses as deep again. :class:`JsonBodyRoute` (the ``route_class`` of the gateway's routers) reads
the body before FastAPI does and:

1. refuses a body whose content type is not JSON with 415 where the route says which types it takes
   (``openapi_extra["x-strata-content-types"]``), with ``Accept-Patch`` on a PATCH (RFC 5789);
2. parses it with orjson (in Rust; it also refuses NaN, lone surrogates and numbers out of range, which PostgreSQL's
   ``jsonb`` would refuse later, and stops at 1,024 levels without recursing in Python);
3. refuses nesting deeper than ``EdgePolicy.max_json_depth`` with a 422 problem, code ``too-deep``
   (:func:`json_depth_within`: C-speed byte operations, no Python walk over the parsed value);
4. hands FastAPI the parsed value, so the body is parsed once.

The services check their own, finer limits (an item's ``attributes`` depth, a schema's size); this guard only keeps
what cannot be a valid body of any route from costing more than its bytes.
"""

from __future__ import annotations

import email.message
import re
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute

from strata.schemas import Unprocessable
from strata.serve_apps.gateway._hygiene import EdgePolicy

CONTENT_TYPES_KEY = "x-strata-content-types"
"""``openapi_extra`` key of a route: the media types its body may have (others answer 415)."""
MERGE_PATCH = "application/merge-patch+json"
JSON = "application/json"

_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


class UnsupportedMediaType(Unprocessable):
    """A body in a media type the route does not take (answered 415; ``extra["headers"]`` go on the answer)."""

    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported Media Type"


def json_depth_within(raw: bytes, limit: int) -> bool:
    """Whether the valid JSON text ``raw`` nests at most ``limit`` arrays and objects deep.

    Strings are cut out (their brackets are text), everything but brackets dropped and ``{}`` made ``[]``; each
    ``replace("[]", "")`` then removes exactly one level (the innermost pairs: ``str.replace`` does not rescan what
    it joined), so the text is empty after ``limit`` passes exactly when the depth is at most ``limit``. Cost: a
    regex pass and ``limit`` shrinking byte scans, all in C.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:  # most small bodies: no scan at all
        return True
    brackets = _STRINGS.sub(b"", raw).translate(_BRACKETS, _NOT_BRACKETS)
    for _ in range(limit):
        if not brackets:
            return True
        brackets = brackets.replace(b"[]", b"")
    return not brackets


def parse_json_body(raw: bytes, max_depth: int) -> Any:
    """The JSON value of a request body, or :class:`~strata.schemas.Unprocessable` (``invalid-json``, ``too-deep``)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if not json_depth_within(raw, max_depth):  # orjson stops at 1,024 levels: say why, not just "invalid"
            raise Unprocessable(f"the body nests deeper than {max_depth} levels", code="too-deep") from None
        raise Unprocessable(f"the body is not valid JSON: {exc}", code="invalid-json") from None
    if isinstance(value, dict | list) and not json_depth_within(raw, max_depth):
        raise Unprocessable(f"the body nests deeper than {max_depth} levels", code="too-deep")
    return value


def media_type(content_type: str | None) -> str | None:
    """The bare media type of a ``Content-Type`` value (``application/json; charset=utf-8`` -> ``application/json``)."""
    if not content_type:
        return None
    message = email.message.Message()
    message["content-type"] = content_type
    return message.get_content_type().lower()


def _is_json(media: str | None) -> bool:
    return media is not None and (media == JSON or (media.startswith("application/") and media.endswith("+json")))


class _ParsedJsonRequest(Request):
    """A request whose JSON body was parsed already: FastAPI's ``await request.json()`` gets that value."""

    def __init__(self, request: Request, raw: bytes, value: Any) -> None:
        super().__init__(request.scope, request.receive)
        self._raw = raw
        self._parsed = value

    async def body(self) -> bytes:
        return self._raw

    async def json(self) -> Any:
        return self._parsed


class JsonBodyRoute(APIRoute):
    """An ``APIRoute`` whose JSON body is checked and parsed by :func:`parse_json_body` (see the module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        accepted = tuple((self.openapi_extra or {}).get(CONTENT_TYPES_KEY, ()))
        method_is_patch = "PATCH" in (self.methods or set())

        async def bounded_json_handler(request: Request) -> Response:
            if request.method in ("GET", "HEAD", "DELETE", "OPTIONS"):
                return await handler(request)
            raw = await request.body()
            media = media_type(request.headers.get("content-type"))
            if raw and accepted and media is not None and media not in accepted:
                headers = {"Accept-Patch": ", ".join(accepted)} if method_is_patch else {}
                raise UnsupportedMediaType(
                    f"this route takes {' or '.join(accepted)}, not {media}",
                    code="unsupported-media-type",
                    headers=headers,
                )
            if not raw or not (media is None or _is_json(media)):
                return await handler(request)  # no body, or not JSON: FastAPI answers as it does
            policy: EdgePolicy = getattr(request.app.state, "edge_policy", None) or EdgePolicy()
            return await handler(_ParsedJsonRequest(request, raw, parse_json_body(raw, policy.max_json_depth)))

        return bounded_json_handler
