"""Item schemas: bounded, valid, local and run on RE2; attributes within their limits and checked against them."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import jsonschema._keywords
import jsonschema._utils
import pytest

from strata.schemas import Unprocessable
from strata.serve_apps.data._item_schemas import (
    ItemChecks,
    ValidationBudget,
    check_item_schema,
    item_validator,
    validate_attributes,
    validate_request,
)
from strata.serve_apps.data._limits import DataLimits, check_attributes, json_depth

LIMITS = DataLimits(
    max_attributes_bytes=1024,
    max_json_depth=6,
    max_schema_bytes=2048,
    max_batch_items=10,
    max_page_size=50,
    max_validation_steps=200_000,
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
    validate_attributes(validator, {"n": 1, "s": "ABC", "x-note": "ok"}, ValidationBudget(LIMITS.max_validation_steps))
    with pytest.raises(Unprocessable) as refused:
        validate_attributes(validator, {"n": "one", "s": "abc", "x-note": 1, "other": True}, ValidationBudget(1000))
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


class _NoBacktracking:
    """Stands in for the ``re`` module inside jsonschema: a schema pattern that reached Python's ``re`` fails."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"re.{name} ran a schema's pattern: Python's backtracking engine, open to ReDoS")


def test_a_catastrophic_pattern_runs_on_re2_never_on_pythons_re(monkeypatch: pytest.MonkeyPatch) -> None:
    # On Python's re, these patterns on these strings backtrack for longer than the universe has left; RE2 is
    # linear in the input. Every place jsonschema would call re.search is replaced by a trap.
    for module in (jsonschema._keywords, jsonschema._utils):
        monkeypatch.setattr(module, "re", _NoBacktracking())
    schema = {
        "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}},
        "patternProperties": {"^(a|a)*$": {"type": "integer"}},
        "additionalProperties": False,
    }
    check_item_schema(schema, LIMITS)
    validator = item_validator("c2", 1, schema)
    with pytest.raises(Unprocessable) as refused:
        validate_attributes(validator, {"s": "a" * 800 + "!", "a" * 100 + "!": 1}, ValidationBudget(1000))
    assert refused.value.extra["code"] == "invalid-attributes"
    validate_attributes(validator, {"s": "aaaa", "aa": 1}, ValidationBudget(1000))


def test_messages_never_echo_large_input() -> None:
    validator = item_validator("c3", 1, {"properties": {"s": {"maxLength": 3}}})
    with pytest.raises(Unprocessable) as refused:
        validate_attributes(validator, {"s": "y" * 900}, ValidationBudget(1000))
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


ROOMY = DataLimits(
    max_attributes_bytes=16 * 1024,
    max_json_depth=16,
    max_schema_bytes=16 * 1024,
    max_batch_items=10,
    max_page_size=50,
    max_validation_steps=200_000,
    idempotency_ttl_s=60,
    idempotency_wait_s=1.0,
    cursor_key=b"k" * 32,
)


def attributes_code(schema: dict[str, Any], attributes: dict[str, Any]) -> str | None:
    check_item_schema(schema, ROOMY)
    try:
        validate_attributes(
            item_validator(f"c-{id(schema)}", 1, schema), attributes, ValidationBudget(ROOMY.max_validation_steps)
        )
    except Unprocessable as refused:
        return str(refused.extra["code"])
    return None


UNIQUE = {"type": "object", "properties": {"a": {"type": "array", "uniqueItems": True}}}


@pytest.mark.parametrize(
    ("items", "unique"),
    [
        ([1, 1.0], False),  # equal numbers
        ([1, True], True),  # a boolean is no number
        ([{"x": 1, "y": 2}, {"y": 2, "x": 1}], False),  # objects whatever their key order
        ([[1, [2]], [1, [2.0]]], False),
        ([None, 0, "", [], {}], True),
        ([{"k": n} for n in range(1800)], True),  # took jsonschema 5 s (pairwise comparison); hashed once here
    ],
)
def test_unique_items_keeps_json_schema_equality_and_is_linear(items: list[Any], unique: bool) -> None:
    assert attributes_code(UNIQUE, {"a": items}) == (None if unique else "invalid-attributes")


def _fanning_references(levels: int) -> dict[str, Any]:
    """Each level refers to the next twice: 2**levels evaluations from a schema of a few hundred bytes."""
    defs: dict[str, Any] = {f"d{n}": {"allOf": [{"$ref": f"#/$defs/d{n + 1}"}] * 2} for n in range(levels)}
    defs[f"d{levels}"] = {"type": "object"}
    return defs


def test_references_fanning_out_are_refused_when_the_schema_is_stored() -> None:
    schema = {"$defs": _fanning_references(25), "$ref": "#/$defs/d0"}
    with pytest.raises(Unprocessable) as refused:
        check_item_schema(schema, ROOMY)
    assert refused.value.extra["code"] == "invalid-schema"


def test_work_past_the_budget_refuses_the_item_not_the_replica() -> None:
    # The fan-out hides behind a property: storing the schema passes, an item that has the property is refused.
    hidden = {"$defs": _fanning_references(25), "type": "object", "properties": {"x": {"$ref": "#/$defs/d0"}}}
    assert attributes_code(hidden, {"y": 1}) is None
    assert attributes_code(hidden, {"x": {}}) == "too-complex"
    # A large enum checked at every element of an array multiplies too.
    enum = {"type": "object", "properties": {"a": {"type": "array", "items": {"enum": list(range(2000))}}}}
    assert attributes_code(enum, {"a": list(range(10))}) is None
    assert attributes_code(enum, {"a": list(range(2000))}) == "too-complex"


def test_ordinary_items_of_the_largest_size_stay_within_the_budget() -> None:
    tree = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {"v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
            }
        },
        "$ref": "#/$defs/node",
    }
    assert (
        attributes_code(tree, {"v": 1, "kids": [{"v": i, "kids": [{"v": j} for j in range(10)]} for i in range(100)]})
        is None
    )
    flat = {"type": "object", "additionalProperties": {"type": "object", "properties": {"a": {"type": "string"}}}}
    assert attributes_code(flat, {f"k{n}": {"a": "x"} for n in range(600)}) is None


# --- one budget per request -----------------------------------------------------------------------------------------


def _fan_out(levels: int) -> dict[str, Any]:
    return {"$defs": _fanning_references(levels), "$ref": "#/$defs/d0"}


def test_a_batch_shares_one_budget_that_each_of_its_items_alone_stays_within() -> None:
    schema = _fan_out(6)  # about 1,400 steps for an empty object
    validator = item_validator("c-per-request", 1, schema)
    alone = ValidationBudget(20_000)
    validate_request(validator, [{}], 20_000, batch=True)
    validate_attributes(validator, {}, alone)
    one_item = 20_000 - alone.left
    assert 1_000 < one_item < 2_000
    fits = 20_000 // one_item
    validate_request(validator, [{}] * fits, 20_000, batch=True)  # just within: every item passes
    with pytest.raises(Unprocessable) as refused:
        validate_request(validator, [{}] * (fits + 1), 20_000, batch=True)
    assert refused.value.extra["code"] == "too-complex"
    assert refused.value.extra["index"] == fits, "the item the budget ran out at"
    assert refused.value.extra["limit"] == 20_000
    assert "20000 steps (data_max_validation_steps)" in str(refused.value)
    for _ in range(fits + 1):  # the same items, one request each: each has a budget of its own
        validate_request(validator, [{}], 20_000, batch=False)


def test_a_budget_spent_stays_spent_and_a_single_item_is_refused_without_an_index() -> None:
    budget = ValidationBudget(100)
    validator = item_validator("c-spent", 1, {"type": "object", "properties": {"a": {"enum": list(range(50))}}})
    validate_attributes(validator, {"a": 1}, budget)
    assert 0 <= budget.left < 100 - 50
    with pytest.raises(Unprocessable) as refused:
        validate_attributes(validator, {"a": 2}, budget)
    assert refused.value.extra["code"] == "too-complex" and "index" not in refused.value.extra


def test_a_schema_is_accepted_only_if_a_full_batch_of_empty_objects_fits_the_request_budget() -> None:
    default = DataLimits(**{**vars_of(ROOMY), "max_batch_items": 100, "max_validation_steps": 200_000})
    check_item_schema(_fan_out(6), default)  # ~1,400 steps each: 100 of them fit 200,000
    with pytest.raises(Unprocessable) as refused:
        check_item_schema(_fan_out(11), default)  # ~45,000 steps: within the old per-item budget, 4.5 M a batch
    assert refused.value.extra["code"] == "invalid-schema"
    assert "data_max_validation_steps / data_max_batch_items = 200000 / 100" in str(refused.value)
    # The share follows the settings: a larger budget, or smaller batches, leave room for more.
    check_item_schema(_fan_out(11), DataLimits(**{**vars_of(default), "max_batch_items": 2}))
    # Ordinary schemas cost a handful of steps on an empty object.
    check_item_schema({"type": "object", "required": ["a"], "properties": {"a": {"type": "string"}}}, default)


def vars_of(limits: DataLimits) -> dict[str, Any]:
    return {name: getattr(limits, name) for name in DataLimits.__slots__}


class _BlockingValidator:
    """Stands for a validator whose check runs until the event loop has run something else meanwhile."""

    def __init__(self) -> None:
        self.loop_ran = threading.Event()
        self.thread: int | None = None

    def iter_errors(self, instance: Any) -> Any:
        self.thread = threading.get_ident()
        assert self.loop_ran.wait(timeout=30), "the event loop ran nothing while the check was under way"
        return iter(())


async def test_checks_run_off_the_event_loop_which_goes_on_meanwhile() -> None:
    checks = ItemChecks.dedicated()
    validator = _BlockingValidator()
    try:
        check = asyncio.ensure_future(checks.check(validator, [{}], steps=10, batch=False))  # type: ignore[arg-type]
        await asyncio.sleep(0)
        validator.loop_ran.set()  # the loop is not blocked by the check under way
        await check
        assert validator.thread is not None and validator.thread != threading.get_ident()
    finally:
        checks.close()
        checks.close()  # safe twice
    with pytest.raises(RuntimeError):
        await checks.check(validator, [{}], steps=10, batch=False)  # type: ignore[arg-type]


async def test_a_refusal_found_off_the_loop_reaches_the_caller() -> None:
    checks = ItemChecks()  # the loop's default executor
    validator = item_validator("c-off-loop", 1, {"type": "object", "properties": {"n": {"type": "integer"}}})
    await checks.check(validator, [{"n": 1}], steps=1_000, batch=True)
    with pytest.raises(Unprocessable) as refused:
        await checks.check(validator, [{"n": 1}, {"n": "two"}], steps=1_000, batch=True)
    assert refused.value.extra["code"] == "invalid-attributes" and refused.value.extra["index"] == 1
