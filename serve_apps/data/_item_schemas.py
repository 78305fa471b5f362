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
from collections import OrderedDict
from collections.abc import Iterator
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


_RE2Validator = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator,
    {"pattern": _pattern, "patternProperties": _pattern_properties, "additionalProperties": _additional_properties},
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
        if exc.extra.get("code") == "invalid-schema":
            raise
    except ValidationError:
        pass


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
