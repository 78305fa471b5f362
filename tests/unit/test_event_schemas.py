"""The committed JSON Schemas of the events: in line with the models, and what an external consumer can rely on.

Each sample event is checked the way an outsider would: against the committed
file with ``jsonschema`` (formats on), and parsed by the CloudEvents SDK, an
implementation that owes nothing to strata.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import typer
from cloudevents.core.bindings.kafka import KafkaMessage, from_structured_event
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from pydantic import Field
from typer.testing import CliRunner

from strata.cluster._cli_events import events_app
from strata.cluster._errors import ClusterError
from strata.schemas.events import (
    EVENT_TYPES,
    ITEM_CREATED,
    SCHEMA_BASE_URL,
    EventType,
    ItemCreated,
    UnknownEventType,
    decode,
    encode,
    event_json_schema,
    new_event,
    render_schemas,
    schema_dir,
    schema_drift,
    schema_file_name,
    validate_against_schema,
    write_schemas,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "events.md"

# Payloads the generic builder below cannot make (a field it does not know how to fill): one dict per type.
EXPLICIT_SAMPLES: dict[str, dict[str, Any]] = {
    "strata.auth.account.login_failed.v1": {"user_id": str(uuid.uuid4()), "reason": "invalid_credentials"},
    "strata.auth.account.sessions_revoked.v1": {
        "user_id": str(uuid.uuid4()),
        "reason": "refresh_token_reuse",
        "family_id": str(uuid.uuid4()),
    },
    "strata.users.user.updated.v1": {"user_id": str(uuid.uuid4()), "display_name": "Ada Lovelace"},
    "strata.users.user.roles_changed.v1": {
        "user_id": str(uuid.uuid4()),
        "roles": ["admin", "member"],
        "perm_version": 2,
    },
}


def sample_payload(event: EventType) -> dict[str, Any]:
    """Valid ``data`` for ``event``: explicit if listed above, else built from the payload's JSON Schema.

    Fails for a type whose fields are beyond the builder, so a new event type
    cannot go untested: give it an entry in ``EXPLICIT_SAMPLES``.
    """
    if event.type in EXPLICIT_SAMPLES:
        data = EXPLICIT_SAMPLES[event.type]
    else:
        schema = event.payload.model_json_schema()
        data = {name: _sample_value(event, name, field) for name, field in schema["properties"].items()}
    event.payload.model_validate(data)  # a sample that is not valid would prove nothing
    return data


def _sample_value(event: EventType, name: str, field: dict[str, Any]) -> Any:
    if "const" in field:
        return field["const"]
    if "enum" in field:
        return field["enum"][0]
    kind = field.get("type")
    if kind == "string" and field.get("format") == "date-time":
        return "2026-01-02T03:04:05.678901Z"
    if kind == "string" and field.get("format") == "uuid":
        return str(uuid.uuid4())
    if kind == "string" and name.endswith("_id") and field.get("minLength") == field.get("maxLength") == 36:
        return str(uuid.uuid4())  # an aggregate's id (collection_id, item_id): a UUID, as the service makes them
    if kind == "string" and "format" not in field and "pattern" not in field:
        text = f"{name}-{uuid.uuid4().hex}"[: field.get("maxLength", 64)]
        return text.ljust(field.get("minLength", 1), "x")
    if kind == "integer":
        return field.get("minimum", field.get("exclusiveMinimum", 0) + 1)
    if kind == "number":
        return float(field.get("minimum", 1))
    if kind == "boolean":
        return True
    raise AssertionError(f"no sample for {event.type} field {name!r} ({field}): add {event.type} to EXPLICIT_SAMPLES")


def sample_event(event: EventType, **overrides: Any) -> dict[str, Any]:
    """A message of type ``event`` as produced by strata (``new_event`` + ``encode``), as a dict."""
    data = sample_payload(event)
    made = new_event(
        event,
        event.payload.model_validate(data),
        subject=f"{event.entity}/{data.get('collection_id', 'x')}",
        key=str(data.get("collection_id", "key")),  # data events are keyed by their collection
        request_id="req-7f3a",
        actor="user-42",
    )
    return {**orjson.loads(encode(made)), **overrides}


def committed_validator(event: EventType) -> Draft202012Validator:
    schema = json.loads((schema_dir() / schema_file_name(event)).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


ALL_TYPES = pytest.mark.parametrize(
    "event", [EVENT_TYPES[name] for name in sorted(EVENT_TYPES)], ids=sorted(EVENT_TYPES)
)


# --- the committed files and the models ---------------------------------------------------------------------------


def test_the_committed_schema_files_match_the_models() -> None:
    drift = schema_drift(schema_dir())
    hint = "event JSON Schemas drifted from the models: run `make schemas` and commit schemas/events/json/"
    assert drift == [], hint + "\n" + "\n".join(drift)


def test_the_drift_check_fails_when_a_payload_gains_a_field_without_its_file(monkeypatch: pytest.MonkeyPatch) -> None:
    class GrownItemCreated(ItemCreated):
        """An item was created in a collection."""

        colour: str | None = Field(default=None, description="A field added to the model, not to the file.")

    monkeypatch.setitem(EVENT_TYPES, ITEM_CREATED.type, dataclasses.replace(ITEM_CREATED, payload=GrownItemCreated))

    drift = schema_drift(schema_dir())

    assert len(drift) == 1
    assert schema_file_name(ITEM_CREATED) in drift[0]
    assert "out of date" in drift[0]


def test_the_drift_check_reports_missing_and_stale_files(monkeypatch: pytest.MonkeyPatch) -> None:
    added = dataclasses.replace(ITEM_CREATED, entity="widget")
    monkeypatch.setitem(EVENT_TYPES, added.type, added)
    monkeypatch.delitem(EVENT_TYPES, ITEM_CREATED.type)

    drift = schema_drift(schema_dir())

    assert any(schema_file_name(added) in line and "missing" in line for line in drift), drift
    assert any(schema_file_name(ITEM_CREATED) in line and "stale" in line for line in drift), drift


def test_write_schemas_creates_rewrites_and_removes_only_what_differs(tmp_path: Path) -> None:
    assert sorted(p.name for p in write_schemas(tmp_path)) == sorted(render_schemas())
    assert write_schemas(tmp_path) == []

    stale = tmp_path / "strata.data.gone.deleted.v1.json"
    stale.write_text("{}\n")
    edited = tmp_path / schema_file_name(ITEM_CREATED)
    edited.write_text(edited.read_text().replace('"minimum": 1', '"minimum": 0'))
    assert len(schema_drift(tmp_path)) == 2

    assert write_schemas(tmp_path) == sorted([stale, edited])
    assert not stale.exists()
    assert schema_drift(tmp_path) == []


def test_strata_events_schemas_check_fails_on_drift_and_regenerating_fixes_it(tmp_path: Path) -> None:
    cli = typer.Typer()  # as strata's CLI mounts it: `strata events ...`
    cli.add_typer(events_app, name="events")
    runner = CliRunner()

    failed = runner.invoke(cli, ["events", "schemas", "--check", "--dir", str(tmp_path)])
    assert isinstance(failed.exception, ClusterError)
    assert "make schemas" in str(failed.exception)
    assert not list(tmp_path.iterdir())  # --check changes nothing

    written = runner.invoke(cli, ["events", "schemas", "--dir", str(tmp_path)])
    assert written.exit_code == 0, written.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(render_schemas())

    checked = runner.invoke(cli, ["events", "schemas", "--check", "--dir", str(tmp_path)])
    assert checked.exit_code == 0, checked.output


@ALL_TYPES
def test_each_schema_is_standalone_with_a_closed_envelope_and_open_payloads(event: EventType) -> None:
    schema = event_json_schema(event)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"{SCHEMA_BASE_URL}{event.type}.json"
    assert schema["title"] == event.type
    assert schema["additionalProperties"] is False
    assert schema["properties"]["type"]["const"] == event.type
    assert schema["properties"]["source"]["const"] == f"strata/{event.service}"
    assert schema["properties"]["dataschema"]["const"] == schema["$id"]
    assert schema["properties"]["data"]["additionalProperties"] is True
    assert "$ref" not in json.dumps(schema) or "$defs" in schema


def test_a_payload_model_that_forbids_unknown_fields_is_refused() -> None:
    class Closed(ItemCreated):
        """Closed."""

        model_config = {**ItemCreated.model_config, "extra": "forbid"}

    with pytest.raises(ValueError, match="forbids unknown fields"):
        event_json_schema(dataclasses.replace(ITEM_CREATED, payload=Closed))


# --- every produced event, as an external consumer sees it -------------------------------------------------------


@ALL_TYPES
def test_every_event_validates_against_its_committed_schema(event: EventType) -> None:
    message = sample_event(event)

    committed_validator(event).validate(message)
    validate_against_schema(orjson.dumps(message))
    assert message["dataschema"] == f"{SCHEMA_BASE_URL}{schema_file_name(event)}"


@ALL_TYPES
def test_every_event_parses_as_a_cloudevent_with_the_cloudevents_sdk(event: EventType) -> None:
    message = sample_event(event)
    raw = orjson.dumps(message)

    parsed = from_structured_event(
        KafkaMessage(headers={"content-type": b"application/cloudevents+json"}, key=None, value=raw)
    )

    assert parsed.get_specversion() == "1.0"
    assert parsed.get_id() == message["id"]
    assert parsed.get_type() == event.type
    assert parsed.get_source() == f"strata/{event.service}"
    assert parsed.get_subject() == message["subject"]
    assert parsed.get_dataschema() == message["dataschema"]
    assert parsed.get_datacontenttype() == "application/json"
    assert parsed.get_time() == datetime.fromisoformat(message["time"])
    assert parsed.get_extension("partitionkey") == message["partitionkey"]
    assert parsed.get_extension("requestid") == "req-7f3a"
    assert parsed.get_extension("actor") == "user-42"
    assert parsed.get_data() == message["data"]


@ALL_TYPES
def test_an_event_without_the_optional_extensions_is_valid_too(event: EventType) -> None:
    message = sample_event(event)
    del message["requestid"], message["actor"]

    committed_validator(event).validate(message)
    assert decode(orjson.dumps(message)).requestid is None


# --- what must be refused, what must be tolerated ----------------------------------------------------------------


def _created(**overrides: Any) -> dict[str, Any]:
    return sample_event(ITEM_CREATED, **overrides)


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(_created(colour="blue"), id="extra envelope attribute"),
        pytest.param(_created(type="strata.data.collection.item_created.v9"), id="wrong type"),
        pytest.param(
            _created(data={k: v for k, v in sample_payload(ITEM_CREATED).items() if k != "collection_id"}),
            id="missing payload field",
        ),
        pytest.param(
            _created(data={**sample_payload(ITEM_CREATED), "version": "one"}), id="payload field of wrong type"
        ),
        pytest.param(_created(time="yesterday"), id="time not RFC 3339"),
        pytest.param(_created(specversion="0.3"), id="other CloudEvents version"),
    ],
)
def test_an_invalid_event_fails_the_schema_and_strata_decode(message: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        committed_validator(ITEM_CREATED).validate(message)
    with pytest.raises(ValueError):
        decode(orjson.dumps(message))


def test_validate_against_schema_says_what_is_wrong() -> None:
    message = _created(data={k: v for k, v in sample_payload(ITEM_CREATED).items() if k != "collection_id"})

    with pytest.raises(
        ValueError, match=r"strata\.data\.collection\.item_created\.v1 event .* 'collection_id' is a required property"
    ):
        validate_against_schema(orjson.dumps(message))
    with pytest.raises(ValueError, match="not a JSON message"):
        validate_against_schema(b"{not json")
    with pytest.raises(ValueError, match="no string attribute 'type'"):
        validate_against_schema(b'{"id": "1"}')


def test_an_unknown_event_type_is_refused() -> None:
    raw = orjson.dumps(_created(type="strata.data.widget.created.v1"))

    with pytest.raises(UnknownEventType):
        decode(raw)
    with pytest.raises(UnknownEventType):
        validate_against_schema(raw)


def test_an_unknown_payload_field_is_accepted_and_ignored() -> None:
    message = _created(data={**sample_payload(ITEM_CREATED), "colour": "blue"})

    committed_validator(ITEM_CREATED).validate(message)
    validate_against_schema(orjson.dumps(message))
    assert "colour" not in decode(orjson.dumps(message)).data


# --- docs/events.md -------------------------------------------------------------------------------------------------


def catalogue_rows() -> list[str]:
    """The rows of the catalogue table in docs/events.md, as the code defines them."""
    rows = []
    for event in sorted(EVENT_TYPES.values(), key=lambda e: e.type):
        payload = event.payload.model_json_schema()
        required = set(payload.get("required", []))
        fields = ", ".join(
            f"`{name}`{'' if name in required else '?'} {field.get('type', 'object')}"
            for name, field in payload["properties"].items()
        )
        rows.append(f"| `{event.type}` | `{event.topic}` | {fields} | {payload['description']} |")
    return rows


def test_the_docs_list_every_event_type_as_the_code_defines_it() -> None:
    text = DOCS.read_text(encoding="utf-8")
    missing = [row for row in catalogue_rows() if row not in text]
    assert missing == [], "docs/events.md: update the catalogue table with these rows:\n" + "\n".join(missing)
