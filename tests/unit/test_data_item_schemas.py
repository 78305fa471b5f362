"""Item schemas: bounded, valid, local and run on RE2; attributes within their limits and checked against them."""

from __future__ import annotations

import time
from typing import Any

import pytest

from strata.schemas import Unprocessable
from strata.serve_apps.data._item_schemas import check_item_schema, item_validator, validate_attributes
from strata.serve_apps.data._limits import DataLimits, check_attributes, json_depth

LIMITS = DataLimits(
    max_attributes_bytes=1024,
    max_json_depth=6,
    max_schema_bytes=2048,
    max_batch_items=10,
    max_page_size=50,
    idempotency_ttl_s=60,
    idempotency_wait_s=1.0,
    cursor_key=b"k" * 32,
)


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def code_of(schema: dict[str, Any]) -> str:
    with pytest.raises(Unprocessable) as refused:
        check_item_schema(schema, LIMITS)
    return str(refused.value.extra["code"])


def test_a_good_schema_passes_and_validates() -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}, "s": {"$ref": "#/$defs/code"}},
        "patternProperties": {"^x-": {"type": "string"}},
        "additionalProperties": False,
        "$defs": {"code": {"type": "string", "pattern": "^[A-Z]{3}$"}},
    }
    check_item_schema(schema, LIMITS)
    validator = item_validator("c1", 1, schema)
    validate_attributes(validator, {"n": 1, "s": "ABC", "x-note": "ok"})
    with pytest.raises(Unprocessable) as refused:
        validate_attributes(validator, {"n": "one", "s": "abc", "x-note": 1, "other": True})
    errors = refused.value.extra["errors"]
    assert refused.value.extra["code"] == "invalid-attributes"
    assert {e["path"] for e in errors} >= {"/n", "/s", "/x-note"} and len(errors) <= 10


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "strng"},
        {"minimum": "zero"},
        {"$ref": "https://example.org/schema.json"},
        {"$ref": "other.json#/a"},
        {"$ref": "#/$defs/missing"},
        {"$dynamicRef": "https://example.org/x"},
        {"$id": "https://example.org/mine"},
        {"pattern": "(?<=a)b"},
        {"patternProperties": {"(a)\\1": {}}},
        {"patternProperties": {"^a": {}}, "unevaluatedProperties": False},
        {"$ref": "#"},
        {"enum": ["x" * 100] * 30},
        nested(10),
    ],
)
def test_bad_schemas_are_refused(schema: dict[str, Any]) -> None:
    assert code_of(schema) == "invalid-schema"


def test_a_catastrophic_pattern_runs_in_linear_time() -> None:
    schema = {
        "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}},
        "patternProperties": {"^(a|a)*$": {"type": "integer"}},
        "additionalProperties": False,
    }
    check_item_schema(schema, LIMITS)
    validator = item_validator("c2", 1, schema)
    started = time.monotonic()
    with pytest.raises(Unprocessable):
        validate_attributes(validator, {"s": "a" * 800 + "!", "a" * 100 + "!": 1})
    assert time.monotonic() - started < 5  # Python's re would take longer than the universe has left


def test_messages_never_echo_large_input() -> None:
    validator = item_validator("c3", 1, {"properties": {"s": {"maxLength": 3}}})
    with pytest.raises(Unprocessable) as refused:
        validate_attributes(validator, {"s": "y" * 900})
    assert all(len(e["message"]) <= 200 for e in refused.value.extra["errors"])


def test_validators_are_cached_per_collection_version() -> None:
    schema: dict[str, Any] = {"type": "object"}
    assert item_validator("c4", 1, schema) is item_validator("c4", 1, schema)
    assert item_validator("c4", 2, schema) is not item_validator("c4", 1, schema)


def test_attributes_limits() -> None:
    assert check_attributes({"a": 1}, LIMITS) == b'{"a":1}'
    for attributes, code in (({"a": "x" * 2000}, "too-large"), (nested(7), "too-deep")):
        with pytest.raises(Unprocessable) as refused:
            check_attributes(attributes, LIMITS)
        assert refused.value.extra["code"] == code
    check_attributes(nested(6), LIMITS)


def test_json_depth_is_measured_without_recursion() -> None:
    deep: Any = 1
    for _ in range(50_000):
        deep = [deep]
    assert json_depth(deep) == 50_000
    assert json_depth(1) == 0 and json_depth({}) == 1 and json_depth({"a": [1]}) == 2
