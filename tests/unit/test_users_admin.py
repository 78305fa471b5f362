"""The users service's list cursors: opaque, round-tripping, and refused with 422 when malformed."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from strata.schemas import ResourceNotFound, Unprocessable
from strata.serve_apps.users._admin import decode_cursor, encode_cursor, user_uuid


@pytest.mark.parametrize(
    "created_at",
    [
        datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC),
        datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=-5))),
    ],
)
def test_a_cursor_round_trips_to_the_microsecond(created_at: datetime) -> None:
    user_id = str(uuid.uuid4())

    cursor = encode_cursor(created_at, user_id)

    assert decode_cursor(cursor) == (created_at, user_id)
    assert "=" not in cursor and "/" not in cursor and "+" not in cursor  # URL-safe as it is


def _b64(value: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor!",
        "%%%",
        _b64("just a string"),
        _b64(["2026-03-04T05:06:07+00:00"]),
        _b64(["yesterday", str(uuid.uuid4())]),
        _b64(["2026-03-04T05:06:07+00:00", "not-a-uuid"]),
        _b64(["2026-03-04T05:06:07", str(uuid.uuid4())]),  # no time zone
        _b64([1, 2]),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_a_malformed_cursor_is_unprocessable(cursor: str) -> None:
    with pytest.raises(Unprocessable) as caught:
        decode_cursor(cursor)

    assert caught.value.extra["code"] == "invalid-cursor"


def test_a_user_id_that_is_no_uuid_is_no_user() -> None:
    user_id = uuid.uuid4()

    assert user_uuid(str(user_id).upper()) == str(user_id)
    with pytest.raises(ResourceNotFound):
        user_uuid("42")
