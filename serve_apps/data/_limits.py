"""The data service's limits, read once from the settings, and the checks of a JSON value's size and depth.

:class:`DataLimits` travels into every unit of work as an argument (domain code never reads the environment), so a
script calling the service by handle is held to the same rules as an HTTP client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson
from pydantic import JsonValue

from strata.schemas import Settings, Unprocessable


@dataclass(frozen=True, slots=True)
class DataLimits:
    """What an operator bounds (``data_*`` settings) and the key that signs page cursors."""

    max_attributes_bytes: int
    max_json_depth: int
    max_schema_bytes: int
    max_batch_items: int
    max_page_size: int
    max_validation_steps: int
    idempotency_ttl_s: int
    idempotency_wait_s: float
    cursor_key: bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> DataLimits:
        return cls(
            max_attributes_bytes=settings.data_max_attributes_bytes,
            max_json_depth=settings.data_max_json_depth,
            max_schema_bytes=settings.data_max_schema_bytes,
            max_batch_items=settings.data_max_batch_items,
            max_page_size=settings.data_max_page_size,
            max_validation_steps=settings.data_max_validation_steps,
            idempotency_ttl_s=settings.idempotency_key_ttl_s,
            idempotency_wait_s=settings.idempotency_wait_s,
            cursor_key=settings.derived_key("data-cursor"),
        )


_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
"""A NUL character in JSON text: ``\u0000`` not itself escaped (``\\u0000`` is a backslash, then ``u0000``)."""


def json_depth(value: JsonValue) -> int:
    """How deeply ``value`` nests: 0 for a scalar, 1 for ``{}`` or ``[1]``, 2 for ``{"a": [1]}``.

    Iterative, so a hostile value deeper than Python's recursion limit is measured, not crashed on.
    """
    deepest = 0
    stack: list[tuple[JsonValue, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in node)
    return deepest


def check_json_bounds(value: JsonValue, *, max_bytes: int, max_depth: int, what: str, code_prefix: str = "") -> bytes:
    """``value`` as JSON bytes when within ``max_bytes`` and ``max_depth``; :class:`Unprocessable` otherwise.

    The codes are ``too-deep`` and ``too-large`` (``code_prefix`` may replace both, e.g. ``invalid-schema``); the
    detail states the limit, never the value.
    """
    if json_depth(value) > max_depth:
        raise Unprocessable(f"{what} nests deeper than {max_depth} levels", code=code_prefix or "too-deep")
    try:
        encoded = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise Unprocessable(f"{what} is not JSON", code=code_prefix or "invalid-attributes") from exc
    if len(encoded) > max_bytes:
        raise Unprocessable(f"{what} is larger than {max_bytes} bytes of JSON", code=code_prefix or "too-large")
    if _NUL.search(encoded):  # PostgreSQL's jsonb holds no NUL character, in a key or a string
        raise Unprocessable(f"{what} holds a NUL character (\\u0000)", code=code_prefix or "invalid-attributes")
    return encoded


def check_attributes(attributes: dict[str, JsonValue], limits: DataLimits) -> bytes:
    """An item's ``attributes`` as JSON bytes, within the size and depth limits."""
    return check_json_bounds(
        attributes, max_bytes=limits.max_attributes_bytes, max_depth=limits.max_json_depth, what="attributes"
    )


def check_limit(limit: int, limits: DataLimits) -> int:
    """A page size in 1..``max_page_size``; :class:`Unprocessable` (``invalid-limit``) otherwise."""
    if not 1 <= limit <= limits.max_page_size:
        raise Unprocessable(f"limit must be between 1 and {limits.max_page_size}", code="invalid-limit")
    return limit
