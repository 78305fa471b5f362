"""Signed keyset cursors: a page's end position, bound to the listing that made it.

A cursor is ``<position>.<tag>``, both URL-safe base64 without padding: the position is the JSON array
``[moment in ISO 8601 with its zone, id]`` of the page's last row (as :mod:`strata.serve_apps._pagination`), the tag
an HMAC-SHA256 (key ``Settings.derived_key("data-cursor")``) over the listing's canonical JSON (which collection,
sort, order, filters) and the position. So a cursor that was tampered with, made up, or made by another query (another
collection, another filter or order) is refused with :class:`~strata.schemas.InvalidCursor` (400) before any SQL runs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime

import orjson
from pydantic import JsonValue

from strata.schemas import InvalidCursor
from strata.serve_apps._pagination import KeysetPosition

Listing = Mapping[str, JsonValue]
"""What a cursor is bound to: e.g. ``{"listing": "items", "collection": ..., "sort": ..., ...}``."""

_MAX_CURSOR_CHARS = 512


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _tag(key: bytes, listing: Listing, position: bytes) -> bytes:
    bound = orjson.dumps(listing, option=orjson.OPT_SORT_KEYS)
    return hmac.new(key, bound + b"\n" + position, hashlib.sha256).digest()


def sign_cursor(key: bytes, listing: Listing, moment: datetime, row_id: str | uuid.UUID) -> str:
    """The cursor of the page after the row at ``(moment, row_id)`` of ``listing``; ``moment`` must carry its zone."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a cursor's moment needs a time zone")
    position = orjson.dumps([moment.isoformat(), str(row_id)])
    return f"{_b64(position)}.{_b64(_tag(key, listing, position))}"


def verify_cursor(key: bytes, listing: Listing, cursor: str) -> KeysetPosition:
    """The position in ``cursor`` if :func:`sign_cursor` made it for ``listing``; :class:`InvalidCursor` otherwise."""
    try:
        if len(cursor) > _MAX_CURSOR_CHARS:
            raise ValueError("too long")
        encoded_position, _, encoded_tag = cursor.partition(".")
        position = _unb64(encoded_position)
        if not hmac.compare_digest(_unb64(encoded_tag), _tag(key, listing, position)):
            raise ValueError("bad tag")
        fields = orjson.loads(position)
        if not isinstance(fields, list) or len(fields) != 2 or not all(isinstance(f, str) for f in fields):
            raise TypeError("a position is two strings")
        moment = datetime.fromisoformat(fields[0])
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError("a cursor's moment needs a time zone")
        return KeysetPosition(moment, str(uuid.UUID(fields[1])))
    except (binascii.Error, ValueError, TypeError, AttributeError) as exc:
        raise InvalidCursor("this cursor was not made by this listing") from exc


def next_cursor(
    key: bytes, listing: Listing, rows: Sequence[Mapping[str, object]], limit: int, *, moment: str, row_id: str
) -> str | None:
    """The cursor after the page's last row when the query (asked for ``limit + 1`` rows) found more; else ``None``."""
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    at = last[moment]
    if not isinstance(at, datetime):
        raise TypeError(f"{moment} is no datetime")
    return sign_cursor(key, listing, at, str(last[row_id]))
