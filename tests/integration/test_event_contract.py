"""What external consumers rely on: every event on strata's topics matches its published JSON Schema
and parses as a CloudEvent with an independent library, headers included."""

from __future__ import annotations

import uuid

import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_structured_event

from strata.schemas.events import topic_name, validate_against_schema
from strata.serve_apps.data import DataClient
from tests.conftest import System
from tests.integration.eventing import admin_value, eventually, read_topic

pytestmark = pytest.mark.integration


async def test_every_produced_event_validates_and_parses_as_a_cloudevent(system: System, ray_driver: None) -> None:
    owner = f"contract-{uuid.uuid4().hex[:6]}"
    data = DataClient()
    item = await data.create_item(owner, "note", {"v": 1}, request_id="req-contract")
    await data.update_item(item.id, {"v": 2}, request_id="req-contract")
    await data.delete_item(item.id, request_id="req-contract")

    async def sent() -> bool:
        unsent = await admin_value(system, "SELECT count(*) FROM data.outbox WHERE sent_at IS NULL")
        return bool(unsent == 0)

    await eventually(sent, what="the outbox to drain")
    # This test's item only: other tests put poison messages on the same topic on purpose.
    records = [r for r in await read_topic(system, topic_name("data", "item")) if r.key == item.id.encode()]
    assert len(records) >= 3, "created, updated and deleted must all be published"
    types_seen = set()
    for record in records:
        raw = record.value or b""
        validate_against_schema(raw)
        headers = {name: value for name, value in record.headers}
        assert headers["content-type"].startswith(b"application/cloudevents+json")
        event = from_structured_event(KafkaMessage(headers=headers, key=record.key, value=raw))
        assert event.get_specversion() == "1.0"
        assert record.key == str(event.get_extension("partitionkey")).encode()
        types_seen.add(event.get_type())
    assert {
        "strata.data.item.created.v1",
        "strata.data.item.updated.v1",
        "strata.data.item.deleted.v1",
    } <= types_seen
