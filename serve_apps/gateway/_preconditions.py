"""Conditional requests (RFC 9110, section 13) on the data routes: ETags out, ``If-Match`` / ``If-None-Match`` in.

- A single collection, member or item answers with its strong ETag (``etag(version)``: ``"3"``).
- ``If-None-Match`` on a GET: the current ETag listed (weak comparison, so ``W/"3"`` counts) or ``*`` answers
  304 Not Modified, with the ETag and no body.
- ``If-Match`` on a change: strong comparison, made by the data service in the statement that writes (so two
  changes that read the same version cannot both pass); the gateway only parses it, and refuses a change that must
  be conditional and is not with 428 (:func:`required_if_match`).

``Vary: Authorization`` goes on every answer that carries an ETag: what a caller gets for a URL depends on who they
are (a stranger gets 404, the listing role differs), so any cache that a deployment puts in front, or a browser
shared by two accounts, must key the stored answer by the credentials as well as the URL. The edge keeps its
``Cache-Control: no-store`` for these answers (user data never rests in a cache); a client keeps the ETag itself,
which is all ``If-None-Match`` and ``If-Match`` need.
"""

from __future__ import annotations

import hashlib
import re

from fastapi import Response, status

from strata.schemas import IfMatch, PreconditionRequired, etag

VARY = "Authorization"
_TAG = re.compile(r'^(?:W/)?"([^"]*)"$')


def if_none_match_hits(header: str | None, version: int) -> bool:
    """Whether ``If-None-Match: header`` names the representation at ``version`` (``*`` names any)."""
    return if_none_match_names(header, etag(version))


def if_none_match_names(header: str | None, current: str) -> bool:
    """Whether ``If-None-Match: header`` names the entity tag ``current`` (quoted; weak comparison; ``*``: any)."""
    if header is None:
        return False
    text = header.strip()
    if text == "*":
        return True
    for tag in text.split(","):
        match = _TAG.match(tag.strip())
        if match is not None and match.group(1) == current[1:-1]:
            return True
    return False


def content_etag(representation: bytes) -> str:
    """A strong ETag for a computed representation: its SHA-256, shortened (for answers without a version)."""
    return f'"{hashlib.sha256(representation).hexdigest()[:32]}"'


def conditional_computed(response: Response, representation: bytes, if_none_match: str | None) -> Response | None:
    """:func:`conditional_read` for a computed answer tagged by its content (:func:`content_etag`)."""
    tag = content_etag(representation)
    if if_none_match_names(if_none_match, tag):
        answer = Response(status_code=status.HTTP_304_NOT_MODIFIED)
        answer.headers["ETag"], answer.headers["Vary"] = tag, VARY
        return answer
    response.headers["ETag"], response.headers["Vary"] = tag, VARY
    return None


def required_if_match(header: str | None) -> IfMatch:
    """The precondition of a change that must have one; :class:`~strata.schemas.PreconditionRequired` without."""
    if header is None or not header.strip():
        raise PreconditionRequired(
            "this change needs If-Match with the ETag you read (or *): GET the resource for its ETag"
        )
    return IfMatch.parse(header)


def optional_if_match(header: str | None) -> IfMatch | None:
    """The precondition of a change that may have one (``None``: unconditional)."""
    if header is None or not header.strip():
        return None
    return IfMatch.parse(header)


def tag_response(response: Response, version: int) -> None:
    """Put the ETag of ``version`` (and ``Vary``) on ``response``."""
    response.headers["ETag"] = etag(version)
    response.headers["Vary"] = VARY


def not_modified(version: int) -> Response:
    """The 304 answer for a representation at ``version``: its ETag, no body."""
    response = Response(status_code=status.HTTP_304_NOT_MODIFIED)
    tag_response(response, version)
    return response


def conditional_read(response: Response, version: int, if_none_match: str | None) -> Response | None:
    """A GET's conditional answer: 304 when ``If-None-Match`` names ``version``; else ``None``, with the ETag put on
    ``response`` (the route then answers the resource itself)."""
    if if_none_match_hits(if_none_match, version):
        return not_modified(version)
    tag_response(response, version)
    return None
