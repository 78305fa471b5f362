"""A collection's item schema: JSON Schema Draft 2020-12, bounded, local, and safe to run on a replica.

Checked when a collection is created or its schema changes (:func:`check_item_schema`), refused with
:class:`~strata.schemas.Unprocessable` code ``invalid-schema`` when it:

- is larger than ``data_max_schema_bytes`` or nests deeper than ``data_max_json_depth``;
- is no valid Draft 2020-12 schema (``check_schema``), or names a ``$ref``/``$dynamicRef`` that is not local (it must
  start with ``#``: a replica fetches nothing) or does not resolve;
- holds a ``pattern`` or ``patternProperties`` key that RE2 cannot compile. Patterns run on RE2 (linear in the
  input), never on Python's backtracking ``re``, so no pattern can hang a replica (ReDoS): ``pattern``,
  ``patternProperties`` and ``additionalProperties`` are replaced in the validator. ``unevaluatedProperties`` in a
  schema with ``patternProperties`` is refused, since jsonschema evaluates it with ``re``.

Validators are compiled once per ``(collection id, version)`` (the version moves with every schema change) and
kept in a small LRU cache per process.

Checking attributes costs steps (keyword evaluations), and the steps are counted per request: every item of one
request draws on one :class:`ValidationBudget` of ``data_max_validation_steps``, so a batch costs at most what one
item may. A schema is accepted only if an empty object costs at most its share of a full batch
(``data_max_validation_steps / data_max_batch_items``), and the checks run off the replica's event loop
(:class:`ItemChecks`), so a request being checked never holds another's reads or the replica's health check.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import re2
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import SchemaError, ValidationError
from jsonschema.protocols import Validator
from pydantic import JsonValue
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from strata.schemas import Unprocessable
from strata.serve_apps.data._limits import DataLimits, check_json_bounds

_MAX_ERRORS = 10
_MAX_MESSAGE_CHARS = 200
_CACHE_SIZE = 256
_BASE_URI = "urn:strata:item-schema"


@functools.lru_cache(maxsize=1024)
def _re2(pattern: str) -> Any:
    return re2.compile(pattern)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _re2(pattern).search(instance):
        yield ValidationError("does not match the schema's pattern")


def _pattern_properties(validator: Any, patterns: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        regex = _re2(pattern)
        for name, value in instance.items():
            if regex.search(name):
                yield from validator.descend(value, subschema, path=name, schema_path=pattern)


def _additional_properties(validator: Any, additional: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties", {})
    regexes = [_re2(p) for p in schema.get("patternProperties", {})]
    extras = [name for name in instance if name not in properties and not any(regex.search(name) for regex in regexes)]
    if validator.is_type(additional, "object"):
        for name in extras:
            yield from validator.descend(instance[name], additional, path=name)
    elif not additional and extras:
        yield ValidationError(f"{len(extras)} propert{'y is' if len(extras) == 1 else 'ies are'} not allowed")


def _json_key(value: Any) -> Any:
    """A hashable stand-in for a JSON value, equal exactly when JSON Schema calls two values equal: numbers by value
    (``1`` equals ``1.0``), ``true`` never equal to ``1``, objects whatever their key order."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int | float):
        return ("n", value)
    if isinstance(value, str):
        return ("s", value)
    if value is None:
        return ("z",)
    if isinstance(value, list):
        return ("a", tuple(_json_key(v) for v in value))
    if isinstance(value, dict):
        return ("o", frozenset((k, _json_key(v)) for k, v in value.items()))
    return ("?", id(value))


def _unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    # jsonschema compares every pair of items that cannot be sorted (objects, mixed types): 1,800 small objects took
    # 5 s of a replica's event loop. Hashing each item once is linear.
    if not unique or not validator.is_type(instance, "array"):
        return
    seen: set[Any] = set()
    for element in instance:
        key = _json_key(element)
        if key in seen:
            yield ValidationError("has non-unique elements")
            return
        seen.add(key)


class _TooComplex(Exception):
    """The request's :class:`ValidationBudget` ran out."""


class ValidationBudget:
    """The keyword evaluations one request may still spend checking attributes against an item schema.

    One budget per request, however many items it holds: it starts at ``limit`` (``data_max_validation_steps``) and
    every item of the request draws on it. A ``$ref`` costs 10, an ``enum`` its length plus one, ``uniqueItems``
    its array's length plus one, any other keyword 1; about 2 microseconds of one core each, measured.
    """

    __slots__ = ("left", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def spend(self, cost: int) -> None:
        self.left -= cost
        if self.left < 0:
            raise _TooComplex


_metering = threading.local()
"""The budget of the check running on this thread (:func:`_validate` sets it; a check is synchronous)."""


def _metered(keyword: str, check: Callable[..., Any]) -> Callable[..., Any]:
    def run(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        cost = 1
        if keyword in ("$ref", "$dynamicRef"):
            cost = 10  # resolving a reference costs about ten plain keywords (measured)
        elif keyword == "enum" and isinstance(value, list):
            cost += len(value)
        elif keyword == "uniqueItems" and isinstance(instance, list):
            cost += len(instance)
        _metering.budget.spend(cost)
        return check(validator, value, instance, schema)

    return run


_KEYWORDS: dict[str, Callable[..., Any]] = {
    **Draft202012Validator.VALIDATORS,
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
    "uniqueItems": _unique_items,
}
_RE2Validator = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator, {keyword: _metered(keyword, check) for keyword, check in _KEYWORDS.items()}
)


def _invalid(detail: str) -> Unprocessable:
    return Unprocessable(detail, code="invalid-schema")


def _walk(schema: JsonValue) -> Iterator[tuple[str, JsonValue, dict[str, JsonValue]]]:
    """Every ``(keyword, value, subschema)`` of every object inside ``schema`` (iteratively)."""
    stack: list[JsonValue] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for keyword, value in node.items():
                yield keyword, value, node
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)


def check_item_schema(schema: dict[str, JsonValue], limits: DataLimits) -> None:
    """Refuse ``schema`` (:class:`Unprocessable` ``invalid-schema``) unless it is bounded, valid, local and RE2-safe."""
    check_json_bounds(
        schema,
        max_bytes=limits.max_schema_bytes,
        max_depth=limits.max_json_depth,
        what="item_schema",
        code_prefix="invalid-schema",
    )
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise _invalid(f"item_schema is not a valid JSON Schema (Draft 2020-12): {_short(exc.message)}") from None
    refs: list[str] = []
    has_pattern_properties = has_unevaluated = False
    for keyword, value, _ in _walk(schema):
        if keyword in ("$ref", "$dynamicRef") and isinstance(value, str):
            if not value.startswith("#"):
                raise _invalid(f"item_schema may only hold local references (starting with '#'), not {_short(value)}")
            refs.append(value)
        elif keyword == "$id":
            raise _invalid("item_schema may not set $id (its references are local)")
        elif keyword == "pattern" and isinstance(value, str):
            _check_re2(value)
        elif keyword == "patternProperties" and isinstance(value, dict):
            has_pattern_properties = True
            for pattern in value:
                _check_re2(pattern)
        elif keyword == "unevaluatedProperties":
            has_unevaluated = True
    if has_pattern_properties and has_unevaluated:
        raise _invalid("item_schema may not combine patternProperties with unevaluatedProperties")
    resolver = _registry(schema).resolver(base_uri=_BASE_URI)
    for ref in refs:
        try:
            resolver.lookup(ref)
        except Unresolvable:
            raise _invalid(f"item_schema's reference {_short(ref)} resolves to nothing") from None
    # A schema that loops on itself ({"$ref": "#"}) recurses without end on any instance, and one whose references
    # fan out level by level costs thousands of steps even on an empty object: a full batch of the smallest items
    # must fit one request's budget, so an empty object may cost its share of it.
    share = per_item_steps(limits)
    try:
        _validate(_compile(schema), {}, ValidationBudget(share))
    except Unprocessable as exc:
        if exc.extra.get("code") == "too-complex":
            raise _invalid(
                f"item_schema takes more than {share} steps to check even an empty object (at most"
                f" data_max_validation_steps / data_max_batch_items = {limits.max_validation_steps}"
                f" / {limits.max_batch_items}, so a full batch fits one request's budget): simplify its references"
            ) from None
        if exc.extra.get("code") == "invalid-schema":
            raise


def per_item_steps(limits: DataLimits) -> int:
    """The steps an empty object may cost against a schema: one item's share of a full batch's budget."""
    return max(1, limits.max_validation_steps // limits.max_batch_items)


def _check_re2(pattern: str) -> None:
    try:
        _re2(pattern)
    except re2.error:
        raise _invalid(f"item_schema holds a pattern RE2 cannot compile: {_short(pattern)}") from None


def _registry(schema: dict[str, JsonValue]) -> Registry[Any]:
    registry: Registry[Any] = Registry().with_resource(_BASE_URI, DRAFT202012.create_resource(schema))
    return registry


def _compile(schema: dict[str, JsonValue]) -> Validator:
    validator: Validator = _RE2Validator(schema, registry=_registry(schema))
    return validator


_cache: OrderedDict[tuple[str, int], Validator] = OrderedDict()


def item_validator(collection_id: str, version: int, schema: dict[str, JsonValue]) -> Validator:
    """The compiled validator of collection ``collection_id`` at ``version`` (cached: the version names the schema)."""
    key = (collection_id, version)
    validator = _cache.get(key)
    if validator is None:
        validator = _cache[key] = _compile(schema)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    else:
        _cache.move_to_end(key)
    return validator


def _short(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE_CHARS else text[: _MAX_MESSAGE_CHARS - 3] + "..."


def _validate(validator: Validator, attributes: JsonValue, budget: ValidationBudget) -> list[dict[str, str]]:
    _metering.budget = budget  # validation is synchronous: nothing else validates on this thread meanwhile
    try:
        errors = []
        for error in validator.iter_errors(attributes):
            path = "".join(f"/{str(part).replace('~', '~0').replace('/', '~1')}" for part in error.absolute_path)
            errors.append({"path": path or "/", "message": _short(error.message)})
            if len(errors) >= _MAX_ERRORS:
                break
        return errors
    except (RecursionError, Unresolvable, re2.error):
        raise _invalid("the collection's item_schema cannot be evaluated") from None
    except _TooComplex:
        raise Unprocessable(
            f"checking this request's attributes against the collection's item_schema takes more than {budget.limit}"
            " steps (data_max_validation_steps): send fewer or smaller items, or simplify the schema",
            code="too-complex",
            limit=budget.limit,
        ) from None
    finally:
        _metering.budget = None


def validate_attributes(
    validator: Validator, attributes: dict[str, JsonValue], budget: ValidationBudget, *, index: int | None = None
) -> None:
    """Refuse ``attributes`` the schema rejects: :class:`Unprocessable` ``invalid-attributes``, ``errors`` says where.

    At most ten errors, each ``{path, message}`` (a JSON Pointer into the attributes, a message cut to 200
    characters); in a batch, ``index`` names the item. The steps are drawn from ``budget``, the request's: past it,
    :class:`Unprocessable` ``too-complex`` (``limit`` names the budget; in a batch, ``index`` the item it ran out at).
    """
    try:
        errors = _validate(validator, attributes, budget)
    except Unprocessable as exc:
        if index is not None:
            exc.extra["index"] = index
        raise
    if errors:
        where = "" if index is None else f" (item {index})"
        extra: dict[str, Any] = {"errors": errors}
        if index is not None:
            extra["index"] = index
        raise Unprocessable(
            f"attributes do not satisfy the collection's item_schema{where}", code="invalid-attributes", **extra
        )


def validate_request(validator: Validator, items: Sequence[dict[str, JsonValue]], steps: int, *, batch: bool) -> None:
    """Check every item of one request against ``validator`` within one budget of ``steps``, in order; the first
    refusal is raised (see :func:`validate_attributes`; ``batch`` names the item by its index)."""
    budget = ValidationBudget(steps)
    for index, attributes in enumerate(items):
        validate_attributes(validator, attributes, budget, index=index if batch else None)


class ItemChecks:
    """Runs a request's schema checks off the event loop, on one thread of its own (``dedicated``) or on the
    loop's default executor.

    A check is pure Python: threads of one process take turns holding the GIL, so one thread is as fast as several
    and leaves the event loop the most turns; requests queue for it (each bounded by its budget), and meanwhile the
    loop goes on answering reads and health checks. ``close()`` is safe twice; after it, a check is refused with
    ``RuntimeError``.
    """

    __slots__ = ("_closed", "_executor", "_owned")

    def __init__(self, executor: Executor | None = None, *, owned: bool = False) -> None:
        self._executor = executor
        self._owned = owned
        self._closed = False

    @classmethod
    def dedicated(cls) -> ItemChecks:
        """Checks on a thread of their own, which :meth:`close` stops."""
        return cls(ThreadPoolExecutor(max_workers=1, thread_name_prefix="item-schema-checks"), owned=True)

    async def check(
        self, validator: Validator, items: Sequence[dict[str, JsonValue]], *, steps: int, batch: bool
    ) -> None:
        """:func:`validate_request`, awaited while it runs elsewhere."""
        if self._closed:
            raise RuntimeError("item checks are closed")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            self._executor, functools.partial(validate_request, validator, items, steps, batch=batch)
        )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owned and self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
