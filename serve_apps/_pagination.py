"""Keyset pages: the one cursor codec and page-size rule of every listing (users, audit log).

A listing is ordered by ``(moment, id)``: a ``timestamptz`` and a UUID, together unique. A page ends with the
cursor of its last row, and the next page starts strictly after that position, so rows added while a caller pages
through are neither repeated nor skipped among those already listed. The cursor is opaque to callers: URL-safe
base64 without padding of the JSON array ``[moment in ISO 8601 with its zone, id]``.

Anything that is not a cursor made by :func:`encode_cursor` (garbage, a tampered array, a moment without a zone, an
id that is no UUID) is refused with :class:`~strata.schemas.InvalidCursor` (a 400 at the gateway, as the data
service's own cursors are) before any SQL runs: a zone-less moment would be read in the server's zone and silently
move the page.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from strata.schemas import InvalidCursor, Unprocessable

MAX_PAGE_LIMIT = 200
"""The most rows one page may hold."""


class KeysetPosition(NamedTuple):
    """Where a page ended: the last row's ordering moment and id (a canonical UUID string)."""

    moment: datetime
    id: str


def encode_cursor(moment: datetime, row_id: str | uuid.UUID) -> str:
    """The cursor of the page after the row at ``(moment, row_id)``; ``moment`` must carry its zone."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a cursor's moment needs a time zone")
    return base64.urlsafe_b64encode(orjson.dumps([moment.isoformat(), str(row_id)])).decode().rstrip("=")


def decode_cursor(cursor: str) -> KeysetPosition:
    """The position a cursor of :func:`encode_cursor` holds; :class:`~strata.schemas.InvalidCursor` otherwise."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        fields = orjson.loads(raw)
        if not isinstance(fields, list) or len(fields) != 2 or not all(isinstance(f, str) for f in fields):
            raise TypeError("a cursor holds an array of two strings")
        moment_text, row_id = fields
        moment = datetime.fromisoformat(moment_text)
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError("a cursor's moment needs a time zone")
        return KeysetPosition(moment, str(uuid.UUID(row_id)))
    except (binascii.Error, ValueError, TypeError, AttributeError) as exc:  # orjson.JSONDecodeError is a ValueError
        raise InvalidCursor("malformed cursor") from exc


def next_page_cursor(rows: Sequence[Mapping[str, Any]], limit: int, *, moment: str, row_id: str) -> str | None:
    """The cursor after the page's last row when the query, asked for ``limit + 1`` rows, found more than ``limit``.

    ``moment`` and ``row_id`` name the row's ordering columns. ``None`` on the last page.
    """
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return encode_cursor(last[moment], last[row_id])


def check_page_limit(limit: int) -> int:
    """``limit`` when it lies in 1..:data:`MAX_PAGE_LIMIT`; :class:`Unprocessable` (``invalid-limit``) otherwise."""
    if not 1 <= limit <= MAX_PAGE_LIMIT:
        raise Unprocessable(f"limit must be between 1 and {MAX_PAGE_LIMIT}", code="invalid-limit")
    return limit
