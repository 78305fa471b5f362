"""JSON Merge Patch (RFC 7396): what PATCH applies to an item or a collection."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, JsonValue, ValidationError

from strata.schemas import Unprocessable

M = TypeVar("M", bound=BaseModel)


def merge_patch(target: JsonValue, patch: JsonValue) -> JsonValue:
    """``target`` with ``patch`` applied (RFC 7396, section 2); neither argument is changed.

    An object patch merges member by member (``null`` removes a member); anything else replaces the target whole.
    Callers bound the patch's depth first (it recurses once per level).
    """
    if not isinstance(patch, dict):
        return patch
    result: dict[str, JsonValue] = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value)
    return result


def validation_errors(exc: ValidationError) -> list[dict[str, str]]:
    """A short ``{path, message}`` list of what pydantic refused (never the input itself)."""
    return [
        {"path": "/" + "/".join(str(part) for part in error["loc"]), "message": error["msg"][:200]}
        for error in exc.errors(include_input=False)[:10]
    ]


def patched(model: type[M], target: dict[str, JsonValue], patch: JsonValue) -> M:
    """``target`` with the merge ``patch`` applied, as a ``model``; :class:`Unprocessable` ``invalid-patch`` when
    the patch is no object or its result is not a valid ``model``."""
    if not isinstance(patch, dict):
        raise Unprocessable("a merge patch here is a JSON object", code="invalid-patch")
    try:
        return model.model_validate(merge_patch(target, patch))
    except ValidationError as exc:
        raise Unprocessable(
            "the patched result is not valid", code="invalid-patch", errors=validation_errors(exc)
        ) from None
