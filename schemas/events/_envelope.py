"""The CloudEvents 1.0 envelope every strata event travels in (structured JSON mode).

One message on a strata topic is one JSON object::

    {"specversion": "1.0", "id": "<uuid>", "source": "strata/data",
     "type": "strata.data.collection.item_created.v1", "subject": "collection/<uuid>/item/<uuid>",
     "time": "2026-11-25T21:00:00.123456Z", "datacontenttype": "application/json",
     "dataschema": "https://strata.dev/schemas/events/strata.data.collection.item_created.v1.json",
     "partitionkey": "<aggregate id>", "requestid": "<request id>", "actor": "<who>",
     "data": {...}}

``partitionkey`` is the CloudEvents partitioning extension: the Kafka message
key, so events of one aggregate keep their order. ``requestid`` ties the event
to the request that caused it; ``actor`` names who caused it (a user id, or
``system``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_serializer

from strata.schemas.events._catalog import SCHEMA_BASE_URL, EventType, event_type, topics

DataT = TypeVar("DataT")

_TYPE_PATTERN = r"^strata\.[a-z]+\.[a-z_]+\.[a-z_]+\.v[0-9]+$"


class CloudEvent(BaseModel, Generic[DataT]):
    """A CloudEvents 1.0 event with strata's extensions; ``data`` is the payload model of ``type``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: Literal["1.0"] = Field(default="1.0", description="CloudEvents version.")
    id: Annotated[str, Field(min_length=1, max_length=64, description="Unique per event; duplicates share it.")]
    source: Annotated[str, Field(pattern=r"^strata/[a-z]+$", description="strata/<service> that produced it.")]
    type: Annotated[str, Field(pattern=_TYPE_PATTERN, description="strata.<service>.<entity>.<verb>.v<major>")]
    subject: Annotated[str, Field(min_length=1, max_length=256, description="<entity>/<id> the event is about.")]
    time: datetime = Field(description="When the change committed's transaction wrote it (RFC 3339, UTC).")
    datacontenttype: Literal["application/json"] = Field(default="application/json", description="Always JSON.")
    dataschema: Annotated[str, Field(description="URI of the JSON Schema of this event type.")]
    partitionkey: Annotated[
        str, Field(min_length=1, max_length=256, description="Kafka key: the aggregate id; order holds per key.")
    ]
    requestid: str | None = Field(default=None, max_length=128, description="Request that caused the event.")
    actor: str | None = Field(default=None, max_length=256, description="Who caused it: a user id or 'system'.")
    data: DataT = Field(description="The payload; its shape is fixed by `type`.")

    @field_serializer("time")
    def _rfc3339(self, value: datetime) -> str:
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def new_event(
    event: EventType,
    data: BaseModel,
    *,
    subject: str,
    key: str,
    request_id: str | None = None,
    actor: str | None = None,
) -> CloudEvent[Any]:
    """A new event of type ``event`` (a fresh id, now as its time) carrying ``data``."""
    if not isinstance(data, event.payload):
        raise TypeError(f"{event.type} carries {event.payload.__name__}, not {type(data).__name__}")
    return CloudEvent[Any](
        id=str(uuid.uuid4()),
        source=f"strata/{event.service}",
        type=event.type,
        subject=subject,
        time=datetime.now(UTC),
        dataschema=f"{SCHEMA_BASE_URL}{event.type}.json",
        partitionkey=key,
        requestid=request_id,
        actor=actor,
        data=data.model_dump(mode="json"),
    )


def encode(event: CloudEvent[Any]) -> bytes:
    """The event as the bytes that go on the topic (structured-mode JSON)."""
    return orjson.dumps(event.model_dump(mode="json", exclude_none=True))


_CATALOGUE_TOPICS = frozenset(topics())
"""The topics of the catalogue's event types (consumers check each event against them: once, not per event)."""


class ForeignEvent(ValueError):
    """An event on a topic its type does not belong to, or whose ``source`` is not the service owning that topic."""


def check_provenance(topic: str, event: CloudEvent[Any]) -> None:
    """Refuse (:class:`ForeignEvent`) an event that did not come from the owner of ``topic``.

    Only the owning service's principal may write a topic (Kafka's ACLs); this is the second lock, in every
    consumer: a ``roles_changed`` read from ``strata.users.user.v1`` must say it is a users event and that
    ``strata/users`` produced it. A consumer dead-letters what fails it instead of applying it.
    """
    kind = event_type(event.type)
    owner = topic.split(".")[1] if topic.startswith("strata.") and topic.count(".") >= 2 else None
    if owner != kind.service or (topic in _CATALOGUE_TOPICS and kind.topic != topic):
        raise ForeignEvent(f"{event.type} belongs on {kind.topic}, not on {topic}")
    if event.source != f"strata/{kind.service}":
        raise ForeignEvent(f"{event.type} on {topic} claims source {event.source!r}, not 'strata/{kind.service}'")


def decode(raw: bytes) -> CloudEvent[Any]:
    """Parse and validate a message: the envelope, then ``data`` against the payload model of its ``type``.

    Raises ``ValueError`` (``pydantic.ValidationError`` or ``UnknownEventType``)
    for anything that is not a valid strata event.
    """
    envelope = CloudEvent[dict[str, Any]].model_validate_json(raw)
    payload = event_type(envelope.type).payload.model_validate(envelope.data)
    return envelope.model_copy(update={"data": payload.model_dump(mode="json")})
