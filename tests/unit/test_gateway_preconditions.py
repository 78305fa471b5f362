"""Conditional requests: If-None-Match (weak comparison, *), If-Match required or optional (no Ray)."""

from __future__ import annotations

import pytest

from strata.schemas import IfMatch, PreconditionRequired
from strata.serve_apps.gateway._preconditions import (
    if_none_match_hits,
    not_modified,
    optional_if_match,
    required_if_match,
)


@pytest.mark.parametrize("header", ['"3"', 'W/"3"', '"1", "3"', "*", ' "3" '])
def test_if_none_match_naming_the_current_version_or_any_hits(header: str) -> None:
    assert if_none_match_hits(header, 3)


@pytest.mark.parametrize("header", [None, '"2"', "3", '"3', 'W/"4", "5"', ""])
def test_if_none_match_naming_another_version_or_garbage_misses(header: str | None) -> None:
    assert not if_none_match_hits(header, 3)


def test_a_change_that_must_be_conditional_without_if_match_is_428() -> None:
    for header in (None, "", "  "):
        with pytest.raises(PreconditionRequired) as caught:
            required_if_match(header)
        assert caught.value.status == 428
    assert required_if_match('"4"') == IfMatch(versions=(4,))
    assert required_if_match("*").matches(99)
    assert not required_if_match("garbage").matches(1), "an unparsable tag matches nothing: 412 at the service"


def test_an_optional_if_match_is_none_when_absent() -> None:
    assert optional_if_match(None) is None and optional_if_match('"2"') == IfMatch(versions=(2,))


def test_not_modified_has_the_etag_and_no_body() -> None:
    response = not_modified(7)
    assert response.status_code == 304 and response.body == b""
    assert response.headers["etag"] == '"7"' and response.headers["vary"] == "Authorization"
