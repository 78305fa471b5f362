"""strata's events: the CloudEvents envelope, the catalogue of types and topics, payload models, JSON Schemas."""

from strata.schemas.events._catalog import (
    EVENT_TYPES,
    ITEM_CREATED,
    ITEM_DELETED,
    ITEM_UPDATED,
    SCHEMA_BASE_URL,
    EventType,
    UnknownEventType,
    event_type,
    topic_name,
    topics,
)
from strata.schemas.events._envelope import CloudEvent, decode, encode, new_event
from strata.schemas.events._jsonschema import (
    event_json_schema,
    render_schemas,
    schema_dir,
    schema_drift,
    schema_file_name,
    validate_against_schema,
    write_schemas,
)
from strata.schemas.events._payloads import ItemCreated, ItemDeleted, ItemUpdated

__all__ = [
    "EVENT_TYPES",
    "ITEM_CREATED",
    "ITEM_DELETED",
    "ITEM_UPDATED",
    "SCHEMA_BASE_URL",
    "CloudEvent",
    "EventType",
    "ItemCreated",
    "ItemDeleted",
    "ItemUpdated",
    "UnknownEventType",
    "decode",
    "encode",
    "event_json_schema",
    "event_type",
    "new_event",
    "render_schemas",
    "schema_dir",
    "schema_drift",
    "schema_file_name",
    "topic_name",
    "topics",
    "validate_against_schema",
    "write_schemas",
]
