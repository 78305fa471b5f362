"""JSON Merge Patch (RFC 7396): the examples of its appendix A, and what a patch may leave of an item."""

from __future__ import annotations

from typing import Any

import pytest

from strata.schemas import ItemReplace, Unprocessable
from strata.serve_apps.data._merge_patch import merge_patch, patched

APPENDIX_A: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "result"), APPENDIX_A)
def test_rfc_7396_appendix_a(target: Any, patch: Any, result: Any) -> None:
    assert merge_patch(target, patch) == result


def test_the_target_is_left_unchanged() -> None:
    target = {"a": {"b": 1}}
    merge_patch(target, {"a": {"b": None}})
    assert target == {"a": {"b": 1}}


def test_a_patch_must_leave_a_valid_item() -> None:
    item = {"title": "t", "attributes": {"x": 1}, "tags": ["a"]}

    assert patched(ItemReplace, item, {"attributes": {"x": None, "y": 2}}).attributes == {"y": 2}
    for patch in ({"title": None}, {"owner": "me"}, ["not", "an", "object"], {"tags": "a"}):
        with pytest.raises(Unprocessable) as refused:
            patched(ItemReplace, item, patch)
        assert refused.value.extra["code"] == "invalid-patch"
