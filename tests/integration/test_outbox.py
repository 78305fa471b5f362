"""The transactional outbox: a change and its event commit together, or neither does."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from strata.actors.postgres import Database, ReplicaPoolDatabase, service_dsn
from strata.schemas.events import decode
from strata.serve_apps.data import DataClient
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
    item = await DataClient().create_item(owner, "note", {"hello": "world"}, request_id="req-outbox-1")
    rows = await admin_fetch(
        system, "SELECT id::text AS id, topic, key, payload FROM data.outbox WHERE key = $1", item.id
    )
    assert len(rows) == 1
    event = decode(bytes(rows[0]["payload"]))
    assert (event.type, event.subject, event.partitionkey, event.requestid) == (
        "strata.data.item.created.v1",
        f"item/{item.id}",
        item.id,
        "req-outbox-1",
    )
    assert rows[0]["topic"] == "strata.data.item.v1" and rows[0]["id"] == event.id

    async def sent() -> bool:
        return bool(await admin_value(system, "SELECT sent_at IS NOT NULL FROM data.outbox WHERE key = $1", item.id))

    await eventually(sent, what="the relay to mark the row sent")


async def test_pruning_removes_only_old_sent_rows_of_its_own_share(system: System) -> None:
    import asyncpg

    from strata.actors.outbox import key_hash, prune_sent
    from strata.schemas.events import ITEM_CREATED, ItemCreated, encode, new_event

    conn = await asyncpg.connect(system.admin_dsn)
    try:
        keys = [f"prune-{uuid.uuid4().hex[:8]}" for _ in range(8)]
        for key in keys:
            event = new_event(
                ITEM_CREATED, ItemCreated(item_id=key, owner_id="p", kind="k", version=1), subject="s", key=key
            )
            await conn.execute(
                "INSERT INTO data.outbox (id, topic, key, key_hash, payload, sent_at) VALUES ($1, $2, $3, $4, $5,"
                " CASE WHEN $6 THEN now() - interval '2 days' END)",
                event.id,
                "strata.data.item.v1",
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
