"""What external consumers rely on: every event on strata's topics matches its published JSON Schema
and parses as a CloudEvent with an independent library, headers included."""

from __future__ import annotations

import uuid

import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_structured_event

from strata.contracts import DataClient
from strata.schemas import CollectionCreate, DataCaller, IfMatch, ItemCreate, ItemReplace
from strata.schemas.events import EVENT_TYPES, ITEM_CREATED, validate_against_schema
from tests.conftest import System
from tests.integration.eventing import admin_value, eventually, read_topic

pytestmark = pytest.mark.integration


async def test_every_produced_event_validates_and_parses_as_a_cloudevent(system: System, ray_driver: None) -> None:
    owner, member = DataCaller(user_id=str(uuid.uuid4())), str(uuid.uuid4())
    data = DataClient()
    # One change of each kind the data service publishes, all in one collection (so all under one key).
    made = await data.create_collection(owner, CollectionCreate(name="contract"), request_id="req-contract")
    cid = made.collection.id
    collection = await data.update_collection(
        owner, cid, {"description": "renamed"}, if_match=IfMatch(versions=(1,)), request_id="req-contract"
    )
    await data.put_member(owner, cid, member, "viewer", request_id="req-contract")
    await data.put_member(owner, cid, member, "editor", request_id="req-contract")
    await data.remove_member(owner, cid, member, request_id="req-contract")
    item = (await data.create_item(owner, cid, ItemCreate(title="v1"), request_id="req-contract")).item
    item = await data.replace_item(
        owner,
        cid,
        item.id,
        ItemReplace(title="v2"),
        if_match=IfMatch(versions=(item.version,)),
        request_id="req-contract",
    )
    await data.delete_item(owner, cid, item.id, if_match=IfMatch(versions=(item.version,)), request_id="req-contract")
    await data.delete_collection(
        owner, cid, if_match=IfMatch(versions=(collection.version,)), request_id="req-contract"
    )

    async def sent() -> bool:
        unsent = await admin_value(system, "SELECT count(*) FROM data.outbox WHERE sent_at IS NULL")
        return bool(unsent == 0)

    await eventually(sent, what="the outbox to drain")
    # This test's collection only: other tests put poison messages on the same topic on purpose.
    records = [r for r in await read_topic(system, ITEM_CREATED.topic) if r.key == cid.encode()]
    assert len(records) >= 9, "every change of the collection, its members and its items must be published"
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
    data_types = {name for name, event in EVENT_TYPES.items() if event.service == "data"}
    assert len(data_types) == 9 and types_seen == data_types, "each of the data service's event types, and no other"
