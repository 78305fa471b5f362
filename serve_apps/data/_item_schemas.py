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
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
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
    """Validating one instance took more keyword evaluations than :data:`VALIDATION_BUDGET`."""


VALIDATION_BUDGET = 50_000
"""Keyword evaluations one validation may take (a ``$ref`` costs 10, an ``enum`` its length, ``uniqueItems`` its
array's): about 0.1 s of one core at most.

A schema is bounded in size, but not in the work it asks for: references fanning out level by level (a "billion
laughs" of ``$ref``) or a large ``enum`` checked at every item of an array multiply. Ordinary items of the largest
size take a few thousand; past the budget, the item is refused (``too-complex``) instead of holding the
replica's event loop for seconds."""

_metering = threading.local()


def _metered(keyword: str, check: Callable[..., Any]) -> Callable[..., Any]:
    def run(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        cost = 1
        if keyword in ("$ref", "$dynamicRef"):
            cost = 10  # resolving a reference costs about ten plain keywords (measured)
        elif keyword == "enum" and isinstance(value, list):
            cost += len(value)
        elif keyword == "uniqueItems" and isinstance(instance, list):
            cost += len(instance)
        left = getattr(_metering, "left", VALIDATION_BUDGET) - cost
        _metering.left = left
        if left < 0:
            raise _TooComplex
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
    # A schema that loops on itself ({"$ref": "#"}) recurses without end on any instance: find out now.
    try:
        _validate(_compile(schema), {})
    except Unprocessable as exc:
        if exc.extra.get("code") == "too-complex":
            raise _invalid("item_schema asks for too much work to check even an empty object") from None
        if exc.extra.get("code") == "invalid-schema":
            raise


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


def _validate(validator: Validator, attributes: JsonValue) -> list[dict[str, str]]:
    _metering.left = VALIDATION_BUDGET  # validation is synchronous: nothing else validates on this thread meanwhile
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
            f"checking these attributes against the collection's item_schema takes more than {VALIDATION_BUDGET}"
            " steps: make them smaller or the schema simpler",
            code="too-complex",
        ) from None


def validate_attributes(validator: Validator, attributes: dict[str, JsonValue], *, index: int | None = None) -> None:
    """Refuse ``attributes`` the schema rejects: :class:`Unprocessable` ``invalid-attributes``, ``errors`` says where.

    At most ten errors, each ``{path, message}`` (a JSON Pointer into the attributes, a message cut to 200
    characters); in a batch, ``index`` names the item.
    """
    errors = _validate(validator, attributes)
    if errors:
        where = "" if index is None else f" (item {index})"
        extra: dict[str, Any] = {"errors": errors}
        if index is not None:
            extra["index"] = index
        raise Unprocessable(
            f"attributes do not satisfy the collection's item_schema{where}", code="invalid-attributes", **extra
        )
