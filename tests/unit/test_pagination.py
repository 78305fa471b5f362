"""The one keyset-cursor codec of strata's listings (users, audit log): opaque, round-tripping, strict."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from strata.schemas import InvalidCursor, Unprocessable
from strata.serve_apps._pagination import (
    MAX_PAGE_LIMIT,
    KeysetPosition,
    check_page_limit,
    decode_cursor,
    encode_cursor,
    next_page_cursor,
)


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC),
        datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=-5))),
    ],
)
def test_a_cursor_round_trips_to_the_microsecond_and_its_zone(moment: datetime) -> None:
    row_id = str(uuid.uuid4())

    cursor = encode_cursor(moment, row_id)

    assert decode_cursor(cursor) == KeysetPosition(moment, row_id)
    assert decode_cursor(cursor).moment.utcoffset() == moment.utcoffset()
    assert "=" not in cursor and "/" not in cursor and "+" not in cursor  # URL-safe as it is


def test_a_cursor_names_its_id_canonically() -> None:
    row_id = uuid.uuid4()

    assert decode_cursor(encode_cursor(datetime.now(UTC), row_id)).id == str(row_id)
    assert decode_cursor(_b64([datetime.now(UTC).isoformat(), str(row_id).upper()])).id == str(row_id)


def test_no_cursor_is_made_for_a_moment_without_a_zone() -> None:
    with pytest.raises(ValueError, match="time zone"):
        encode_cursor(datetime(2026, 3, 4, 5, 6, 7), str(uuid.uuid4()))


def _b64(value: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


def _tampered(edit: tuple[str, str]) -> str:
    """A real cursor whose JSON was edited (``edit``: old, new) and encoded again."""
    cursor = encode_cursor(datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC), "8d3c1f2e-6a4b-4c5d-9e8f-0a1b2c3d4e5f")
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    assert edit[0] in raw
    return base64.urlsafe_b64encode(raw.replace(*edit).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("not a cursor!", id="garbage"),
        pytest.param("%%%", id="no-base64"),
        pytest.param(base64.urlsafe_b64encode(b"\xff\xfe").decode(), id="no-json"),
        pytest.param(_b64("just a string"), id="a-string"),
        pytest.param(_b64(["2026-03-04T05:06:07+00:00"]), id="one-field"),
        pytest.param(_b64(["2026-03-04T05:06:07+00:00", str(uuid.uuid4()), "x"]), id="three-fields"),
        pytest.param(_b64({"2026-03-04T05:06:07+00:00": 1, str(uuid.uuid4()): 2}), id="an-object"),
        pytest.param(_b64(["yesterday", str(uuid.uuid4())]), id="no-moment"),
        pytest.param(_b64(["2026-03-04T05:06:07+00:00", "not-a-uuid"]), id="no-uuid"),
        pytest.param(_b64(["2026-03-04T05:06:07", str(uuid.uuid4())]), id="zone-less"),
        pytest.param(_b64([1, 2]), id="numbers"),
        pytest.param(_b64(["x", 1]), id="mixed"),
        pytest.param(_tampered(("+00:00", "")), id="tampered-zone-dropped"),
        pytest.param(_tampered(("4e5f", "4e5g")), id="tampered-id"),
        pytest.param(_tampered(("2026-03-04T05", "2026-13-04T05")), id="tampered-moment"),
        pytest.param(encode_cursor(datetime(2026, 3, 4, tzinfo=UTC), str(uuid.uuid4()))[:-9], id="truncated"),
    ],
)
def test_anything_but_a_cursor_it_made_is_an_invalid_cursor(cursor: str) -> None:
    with pytest.raises(InvalidCursor) as caught:
        decode_cursor(cursor)

    assert caught.value.status == 400
    assert caught.value.slug == "invalid-cursor"


def test_the_next_page_cursor_points_after_the_last_row_shown_and_is_none_on_the_last_page() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [{"at": start + timedelta(seconds=n), "key": str(uuid.uuid4())} for n in range(3)]

    cursor = next_page_cursor(rows, 2, moment="at", row_id="key")

    assert cursor is not None and decode_cursor(cursor) == KeysetPosition(rows[1]["at"], rows[1]["key"])
    assert next_page_cursor(rows, 3, moment="at", row_id="key") is None
    assert next_page_cursor(rows[:2], 2, moment="at", row_id="key") is None


@pytest.mark.parametrize("limit", [0, -1, MAX_PAGE_LIMIT + 1])
def test_a_page_holds_1_to_200_rows(limit: int) -> None:
    assert check_page_limit(1) == 1 and check_page_limit(MAX_PAGE_LIMIT) == MAX_PAGE_LIMIT
    with pytest.raises(Unprocessable) as caught:
        check_page_limit(limit)
    assert caught.value.extra["code"] == "invalid-limit"
