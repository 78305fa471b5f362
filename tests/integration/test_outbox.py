"""The transactional outbox: a change and its event commit together, or neither does."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from ray import serve

from strata.actors.postgres import Database, ReplicaPoolDatabase, service_dsn
from strata.schemas.events import decode
from tests.conftest import System
from tests.integration import units_of_work
from tests.integration.eventing import admin_fetch, admin_value, eventually
from tests.integration.units_of_work import Boom

pytestmark = pytest.mark.integration


@pytest.fixture
async def data_db(system: System) -> AsyncIterator[Database]:
    db = ReplicaPoolDatabase(
        service_dsn(system.runtime.settings, "data"),
        max_size=2,
        command_timeout=10,
        application_name="test",
        schema="data",
    )
    await db.start()
    yield db
    await db.aclose()


async def test_an_exception_after_the_insert_leaves_neither_the_row_nor_its_event(
    system: System, data_db: Database
) -> None:
    owner = f"owner-{uuid.uuid4().hex[:8]}"
    with pytest.raises(Boom):
        await data_db.run_in_transaction(units_of_work.create_item_then_fail, owner)
    assert await admin_value(system, "SELECT count(*) FROM data.items WHERE owner_id = $1", owner) == 0
    events = await admin_fetch(system, "SELECT payload FROM data.outbox")
    assert not [e for e in events if decode(bytes(e["payload"])).data["owner_id"] == owner]


async def test_a_committed_change_has_exactly_one_outbox_row_which_gets_sent(system: System, ray_driver: None) -> None:
    owner = f"owner-{uuid.uuid4().hex[:8]}"
    item = await serve.get_app_handle("data").create_item.remote(owner, "note", {"hello": "world"}, "req-outbox-1")
    rows = await admin_fetch(
        system, "SELECT id::text AS id, topic, key, payload FROM data.outbox WHERE key = $1", item["id"]
    )
    assert len(rows) == 1
    event = decode(bytes(rows[0]["payload"]))
    assert (event.type, event.subject, event.partitionkey, event.requestid) == (
        "strata.data.item.created.v1",
        f"item/{item['id']}",
        item["id"],
        "req-outbox-1",
    )
    assert rows[0]["topic"] == "strata.data.item.v1" and rows[0]["id"] == event.id

    async def sent() -> bool:
        return bool(await admin_value(system, "SELECT sent_at IS NOT NULL FROM data.outbox WHERE key = $1", item["id"]))

    await eventually(sent, what="the relay to mark the row sent")
