"""If-Match headers as the data service compares them: strong entity tags of versions, or ``*``."""

from __future__ import annotations

import pytest

from strata.schemas import IfMatch, Unprocessable, etag
from strata.serve_apps.data._idempotency import check_idempotency_key, fingerprint


@pytest.mark.parametrize(
    ("header", "matching", "not_matching"),
    [
        ('"3"', [3], [2, 4]),
        ('"1", "2"', [1, 2], [3]),
        ("*", [1, 99], []),
        ('W/"3"', [], [3]),
        ('"abc"', [], [1]),
        ("3", [], [3]),
        ("", [], [1]),
    ],
)
def test_parse(header: str, matching: list[int], not_matching: list[int]) -> None:
    condition = IfMatch.parse(header)
    assert all(condition.matches(v) for v in matching)
    assert not any(condition.matches(v) for v in not_matching)


def test_an_etag_parses_back_to_its_version() -> None:
    assert IfMatch.parse(etag(7)).versions == (7,)


def test_idempotency_keys_are_printable_ascii_and_bounded() -> None:
    assert check_idempotency_key("a-1 b") == "a-1 b"
    for bad in ("", "x" * 256, "tab\t", "é"):
        with pytest.raises(Unprocessable):
            check_idempotency_key(bad)


def test_a_fingerprint_ignores_key_order() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
