"""Signed keyset cursors: what one listing made, only that listing takes back."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import pytest

from strata.schemas import InvalidCursor
from strata.serve_apps.data._cursors import next_cursor, sign_cursor, verify_cursor

KEY = b"k" * 32
LISTING = {"listing": "items", "collection": str(uuid.uuid4()), "sort": "created", "order": "asc", "tags": []}
MOMENT = datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
ROW = str(uuid.uuid4())


def test_a_cursor_holds_its_position() -> None:
    cursor = sign_cursor(KEY, LISTING, MOMENT, ROW)
    position = verify_cursor(KEY, dict(LISTING), cursor)
    assert position.moment == MOMENT and position.id == ROW


@pytest.mark.parametrize(
    "other",
    [
        {**LISTING, "collection": str(uuid.uuid4())},
        {**LISTING, "order": "desc"},
        {**LISTING, "sort": "updated"},
        {**LISTING, "tags": ["x"]},
        {"listing": "members", "collection": LISTING["collection"]},
    ],
)
def test_a_cursor_of_another_listing_is_refused(other: dict[str, object]) -> None:
    with pytest.raises(InvalidCursor):
        verify_cursor(KEY, other, sign_cursor(KEY, LISTING, MOMENT, ROW))


def test_a_tampered_or_made_up_cursor_is_refused() -> None:
    cursor = sign_cursor(KEY, LISTING, MOMENT, ROW)
    position, tag = cursor.split(".")
    moved = base64.urlsafe_b64encode(f'["2030-01-01T00:00:00+00:00","{ROW}"]'.encode()).decode().rstrip("=")
    for bad in (
        f"{moved}.{tag}",
        f"{position}.{tag[:-2]}AA" if not tag.endswith("AA") else f"{position}.{tag[:-2]}BB",
        position,
        "garbage",
        "",
        "..",
        "x" * 10_000,
    ):
        with pytest.raises(InvalidCursor):
            verify_cursor(KEY, LISTING, bad)
    with pytest.raises(InvalidCursor):  # another key (another deployment's secret)
        verify_cursor(b"o" * 32, LISTING, cursor)


def test_the_next_cursor_is_made_only_when_there_is_more() -> None:
    rows = [{"created_at": MOMENT, "id": ROW}, {"created_at": MOMENT, "id": str(uuid.uuid4())}]
    assert next_cursor(KEY, LISTING, rows, 2, moment="created_at", row_id="id") is None
    cursor = next_cursor(KEY, LISTING, rows, 1, moment="created_at", row_id="id")
    assert cursor is not None and verify_cursor(KEY, LISTING, cursor).id == ROW


def test_a_zoneless_moment_makes_no_cursor() -> None:
    with pytest.raises(ValueError):
        sign_cursor(KEY, LISTING, datetime(2026, 1, 1), ROW)
