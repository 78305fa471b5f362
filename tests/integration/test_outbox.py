"""The transactional outbox: a change and its event commit together, or neither does."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from strata.actors.postgres import Database, ReplicaPoolDatabase, service_dsn
from strata.contracts import DataClient
from strata.schemas import CollectionCreate, DataCaller, ItemCreate
from strata.schemas.events import COLLECTION_CREATED, ITEM_CREATED, decode
from strata.serve_apps.data._limits import DataLimits
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
    owner = str(uuid.uuid4())
    with pytest.raises(Boom) as failed:
        await data_db.run_in_transaction(
            units_of_work.create_collection_and_item_then_fail, owner, DataLimits.from_settings(system.runtime.settings)
        )
    collection_id, item_id = failed.value.args[1:]  # what the unit of work wrote before it failed
    assert await admin_value(system, "SELECT count(*) FROM data.collections WHERE owner_id = $1", owner) == 0
    assert await admin_value(system, "SELECT count(*) FROM data.items WHERE collection_id = $1", collection_id) == 0
    rows = await admin_fetch(system, "SELECT key, payload FROM data.outbox")
    events = [decode(bytes(r["payload"])) for r in rows]
    assert not [r for r in rows if r["key"] == collection_id], "no outbox row keyed by the rolled-back collection"
    assert not [e for e in events if item_id in (e.data.get("item_id"), e.subject.rsplit("/", 1)[-1])]


async def test_a_committed_change_has_exactly_one_outbox_row_which_gets_sent(system: System, ray_driver: None) -> None:
    caller = DataCaller(user_id=str(uuid.uuid4()))
    data = DataClient()
    collection = (await data.create_collection(caller, CollectionCreate(name="outbox"))).collection
    item = (
        await data.create_item(
            caller, collection.id, ItemCreate(title="hello", attributes={"hello": "world"}), request_id="req-outbox-1"
        )
    ).item
    rows = await admin_fetch(
        system, "SELECT id::text AS id, topic, key, payload FROM data.outbox WHERE key = $1 ORDER BY seq", collection.id
    )
    events = [decode(bytes(row["payload"])) for row in rows]
    assert [e.type for e in events] == [COLLECTION_CREATED.type, ITEM_CREATED.type], "one row per change, no more"
    event = events[1]
    assert (event.type, event.subject, event.partitionkey, event.requestid, event.actor) == (
        "strata.data.collection.item_created.v1",
        f"collection/{collection.id}/item/{item.id}",
        collection.id,
        "req-outbox-1",
        caller.user_id,
    )
    assert (event.data["collection_id"], event.data["item_id"], event.data["version"]) == (collection.id, item.id, 1)
    assert rows[1]["topic"] == "strata.data.collection.v1" and rows[1]["id"] == event.id

    async def sent() -> bool:
        return bool(
            await admin_value(
                system, "SELECT bool_and(sent_at IS NOT NULL) FROM data.outbox WHERE key = $1", collection.id
            )
        )

    await eventually(sent, what="the relay to mark both rows sent")


async def test_pruning_removes_only_old_sent_rows_of_its_own_share(system: System) -> None:
    import asyncpg

    from strata.actors.outbox import key_hash, prune_sent
    from strata.schemas.events import ItemCreated, encode, new_event

    conn = await asyncpg.connect(system.admin_dsn)
    try:
        keys = [str(uuid.uuid4()) for _ in range(8)]  # collection ids, as data events are keyed
        for key in keys:
            payload = ItemCreated(collection_id=key, item_id=str(uuid.uuid4()), version=1)
            event = new_event(ITEM_CREATED, payload, subject=f"collection/{key}/item/{payload.item_id}", key=key)
            await conn.execute(
                "INSERT INTO data.outbox (id, topic, key, key_hash, payload, sent_at) VALUES ($1, $2, $3, $4, $5,"
                " CASE WHEN $6 THEN now() - interval '2 days' END)",
                event.id,
                ITEM_CREATED.topic,
                key,
                key_hash(key),
                encode(event),
                keys.index(key) % 2 == 0,
            )
        mine = [k for k in keys if key_hash(k) % 2 == 0]
        await prune_sent(conn, "data", 0, 2, older_than_s=3600)
        left = {r["key"] for r in await conn.fetch("SELECT key FROM data.outbox WHERE key = ANY($1)", keys)}
        pruned = {k for k in keys if k not in left}
        assert pruned == {k for k in mine if keys.index(k) % 2 == 0}, "only old, sent rows of share 0/2 go"
        await conn.execute("DELETE FROM data.outbox WHERE key = ANY($1)", keys)
    finally:
        await conn.close()
