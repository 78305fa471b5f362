"""The JSON Schemas of strata's events: exported from the pydantic models, committed beside them.

One file per event type, ``<type>.json`` in ``schemas/events/json/``, describes
the whole message on the topic (the CloudEvents envelope with ``data``), so an
external consumer needs nothing from strata but these files. Each schema's
``$id`` is the event's ``dataschema`` URL.

Two rules shape them:

- the envelope is closed (``additionalProperties: false``): its attributes are
  fixed by CloudEvents 1.0 and strata's three extensions;
- payload objects are open (``additionalProperties: true``): payloads grow
  within a major version, and consumers must ignore fields they do not know.

The files are generated (``strata events schemas``, ``make schemas``); a unit
test fails when a model and its file drift apart.
"""

from __future__ import annotations

import functools
import inspect
import json
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strata.schemas.events._catalog import EVENT_TYPES, SCHEMA_BASE_URL, EventType, UnknownEventType
from strata.schemas.events._envelope import CloudEvent

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

# Always on the wire, though the envelope model has defaults for them.
_ALWAYS_SENT = ("specversion", "datacontenttype")


def schema_file_name(event: EventType) -> str:
    """The file holding the JSON Schema of ``event``: ``<type>.json``."""
    return f"{event.type}.json"


def schema_dir() -> Path:
    """The folder of the committed schema files, inside the installed package (``schemas/events/json/``)."""
    folder = resources.files("strata.schemas.events").joinpath("json")
    if not isinstance(folder, Path):  # a zipped install: no folder on disk to read or write
        raise RuntimeError(f"strata's event schemas are not on the file system ({folder})")
    return folder


def event_json_schema(event: EventType) -> dict[str, Any]:
    """The standalone JSON Schema (draft 2020-12) of one message of type ``event``, envelope and data.

    Raises ``ValueError`` when the payload model breaks a rule of the catalogue:
    no docstring (it becomes the schema's description), or a payload object
    that forbids unknown fields.
    """
    # Not inspect.getdoc: it would borrow BaseModel's docstring for a payload without one.
    doc = inspect.cleandoc(event.payload.__doc__ or "")
    if not doc:
        raise ValueError(f"payload model {event.payload.__name__} needs a docstring: it describes {event.type}")
    schema_id = f"{SCHEMA_BASE_URL}{schema_file_name(event)}"

    schema = CloudEvent[dict[str, Any]].model_json_schema()
    payload = event.payload.model_json_schema()
    # Nested models of the payload refer to "#/$defs/<name>": hoisted to the root, the refs still resolve.
    defs: dict[str, Any] = payload.pop("$defs", {})
    for name, definition in defs.items():
        _open_objects(definition, f"{event.type}: $defs/{name}")
    _open_objects(payload, f"{event.type}: data")

    properties: dict[str, Any] = schema["properties"]
    properties["source"] = _const(properties["source"], f"strata/{event.service}")
    properties["type"] = _const(properties["type"], event.type)
    properties["dataschema"] = _const(properties["dataschema"], schema_id)
    properties["data"] = payload
    schema["required"] = [*_ALWAYS_SENT, *(name for name in schema["required"] if name not in _ALWAYS_SENT)]
    if defs:
        schema["$defs"] = defs
    schema.update(
        {
            "$schema": JSON_SCHEMA_DIALECT,
            "$id": schema_id,
            "title": event.type,
            "description": doc,
            "additionalProperties": False,
        }
    )
    return schema


def _const(field: dict[str, Any], value: str) -> dict[str, Any]:
    narrowed = {k: v for k, v in field.items() if k not in ("pattern", "minLength", "maxLength")}
    return {**narrowed, "const": value}


def _open_objects(node: Any, where: str) -> None:
    """Allow unknown properties on every object schema under ``node`` (pydantic's extra="ignore" says nothing)."""
    if isinstance(node, dict):
        if "properties" in node:
            if node.get("additionalProperties") is False:
                raise ValueError(f"{where} forbids unknown fields; payloads must accept them (extra='ignore')")
            node.setdefault("additionalProperties", True)
        for value in node.values():
            _open_objects(value, where)
    elif isinstance(node, list):
        for value in node:
            _open_objects(value, where)


def render_schemas() -> dict[str, str]:
    """File name -> canonical JSON text (sorted keys, indent 2, trailing newline), one per catalogued type."""
    return {
        schema_file_name(event): json.dumps(event_json_schema(event), indent=2, sort_keys=True) + "\n"
        for event in sorted(EVENT_TYPES.values(), key=lambda e: e.type)
    }


def write_schemas(directory: Path) -> list[Path]:
    """Bring ``directory`` in line with the models; return the files created, rewritten or removed.

    A ``.json`` file of a type that is no longer catalogued is removed; files
    already up to date are left untouched.
    """
    directory.mkdir(parents=True, exist_ok=True)
    rendered = render_schemas()
    changed: list[Path] = []
    for name, text in rendered.items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    for path in sorted(directory.glob("*.json")):
        if path.name not in rendered:
            path.unlink()
            changed.append(path)
    return sorted(changed)


def schema_drift(directory: Path) -> list[str]:
    """What differs between the files in ``directory`` and the models, one sentence per file; empty when in line."""
    rendered = render_schemas()
    drift: list[str] = []
    for name, text in rendered.items():
        path = directory / name
        if not path.is_file():
            drift.append(f"{path}: missing (event type {name.removesuffix('.json')} has no schema file)")
            continue
        committed = path.read_text(encoding="utf-8")
        if committed != text:
            line = _first_different_line(committed, text)
            drift.append(f"{path}: out of date (differs from the model from line {line})")
    if directory.is_dir():
        for path in sorted(directory.glob("*.json")):
            if path.name not in rendered:
                drift.append(f"{path}: stale (no event type {path.name.removesuffix('.json')} in the catalogue)")
    return drift


def _first_different_line(a: str, b: str) -> int:
    a_lines, b_lines = a.splitlines(), b.splitlines()
    for number, (left, right) in enumerate(zip(a_lines, b_lines, strict=False), start=1):
        if left != right:
            return number
    return min(len(a_lines), len(b_lines)) + 1


def validate_against_schema(raw: bytes, directory: Path | None = None) -> None:
    """Check one message against the committed JSON Schema of its ``type`` (in ``directory``, default ``schema_dir()``).

    This is what an external consumer does with the published files, so it
    uses ``jsonschema`` (draft 2020-12, formats checked: install
    ``rfc3339-validator`` or ``date-time`` goes unchecked), not strata's models.
    Raises ``UnknownEventType`` when no schema file exists for the type and
    ``ValueError`` for anything else that does not validate.
    """
    try:
        message = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"not a JSON message: {exc}") from exc
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ValueError("not a CloudEvent: no string attribute 'type'")
    folder = directory if directory is not None else schema_dir()
    path = folder / f"{message['type']}.json"
    if not path.is_file():
        raise UnknownEventType(f"no JSON Schema for event type {message['type']!r} in {folder}")
    validator = _validator(path, path.stat().st_mtime_ns)
    from jsonschema.exceptions import best_match

    error = best_match(validator.iter_errors(message))
    if error is not None:
        where = error.json_path if error.absolute_path else "the event"
        raise ValueError(
            f"{message['type']} event {message.get('id', '(no id)')!s} does not match {path.name}: "
            f"{error.message} (at {where})"
        )


@functools.lru_cache(maxsize=64)
def _validator(path: Path, mtime_ns: int) -> Draft202012Validator:
    # Imported here: only consumers that validate against the files need jsonschema.
    from jsonschema import Draft202012Validator

    schema = json.loads(path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
