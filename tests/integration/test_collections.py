"""The data service against the session's real PostgreSQL, Kafka and Ray, through its typed client.

Collections, members and items with their guarantees: one event per change (published, valid against its exported
schema), nothing at all for a refused change, If-Match under concurrency, idempotency keys, keyset pages, the roles
of owner, editor, viewer, admin and stranger, hash partitions, and the users event that deletes a user's data.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from typing import Any

import asyncpg
import orjson
import pytest

from strata.contracts import DataClient, UsersClient
from strata.schemas import (
    CollectionCreate,
    CollectionNotFound,
    Conflict,
    DataCaller,
    Forbidden,
    IfMatch,
    InvalidCursor,
    ItemBatchCreate,
    ItemCreate,
    ItemNotFound,
    ItemQuery,
    ItemReplace,
    PreconditionFailed,
    Unprocessable,
)
from strata.schemas.events import decode, validate_against_schema
from strata.serve_apps.data import _items, _members
from strata.serve_apps.data._limits import DataLimits
from tests.conftest import System
from tests.integration.eventing import admin_fetch, admin_value, eventually, read_topic

pytestmark = pytest.mark.integration

TOPIC = "strata.data.collection.v1"
SCHEMA = {
    "type": "object",
    "properties": {"size": {"type": "integer", "minimum": 0}, "code": {"type": "string", "pattern": "^[A-Z]{3}$"}},
    "required": ["size"],
}


@functools.cache
def data() -> DataClient:
    return DataClient()


def person(*, admin: bool = False) -> DataCaller:
    return DataCaller(user_id=str(uuid.uuid4()), admin=admin)


def rid() -> str:
    return f"req-{uuid.uuid4().hex[:8]}"


async def new_collection(owner: DataCaller, *, schema: dict[str, Any] | None = None, name: str = "Shelf") -> str:
    created = await data().create_collection(owner, CollectionCreate(name=name, item_schema=schema), request_id=rid())
    return created.collection.id


async def outbox_types(system: System, collection_id: str) -> list[str]:
    rows = await admin_fetch(system, "SELECT payload FROM data.outbox WHERE key = $1 ORDER BY seq", collection_id)
    return [decode(bytes(row["payload"])).type for row in rows]


async def published(system: System, collection_id: str) -> list[bytes]:
    """Every message on the topic keyed by ``collection_id``, once the outbox has sent all of them."""

    async def drained() -> bool:
        unsent = await admin_value(
            system, "SELECT count(*) FROM data.outbox WHERE key = $1 AND sent_at IS NULL", collection_id
        )
        return bool(unsent == 0)

    await eventually(drained, what=f"the outbox to publish the events of {collection_id}")
    return [r.value for r in await read_topic(system, TOPIC) if r.key == collection_id.encode() and r.value]


def short(event_type: str) -> str:
    return event_type.removeprefix("strata.data.collection.").removesuffix(".v1")


# --- Must show 5: hash partitions -----------------------------------------------------------------------------------


async def test_items_land_in_every_partition_and_a_one_collection_query_scans_one(
    system: System, ray_driver: None
) -> None:
    owner = person()
    partitions = await admin_value(system, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'data.items'::regclass")
    assert partitions == system.runtime.settings.data_item_partitions == 8

    async def filled() -> set[str]:
        rows = await admin_fetch(system, "SELECT DISTINCT tableoid::regclass::text AS part FROM data.items")
        return {row["part"] for row in rows}

    collections: list[str] = []
    while not collections or len(await filled()) < partitions:  # other tests may have filled them already
        assert len(collections) < 200, "200 collections did not reach every partition"
        batch = [await new_collection(owner, name=f"P{len(collections) + i}") for i in range(8)]
        await asyncio.gather(*(data().create_item(owner, c, ItemCreate(title="x")) for c in batch))
        collections += batch

    assert await filled() == {f"data.items_p{i}" for i in range(partitions)}
    plan = await admin_fetch(
        system,
        "EXPLAIN (FORMAT JSON) SELECT * FROM data.items WHERE collection_id = $1::uuid"
        " ORDER BY created_at, id LIMIT 51",
        collections[0],
    )
    scanned: set[str] = set()
    nodes = [orjson.loads(plan[0]["QUERY PLAN"])[0]["Plan"]]
    while nodes:
        node = nodes.pop()
        scanned |= {node["Relation Name"]} if "Relation Name" in node else set()
        nodes += node.get("Plans", [])
    assert len(scanned) == 1 and scanned <= {f"items_p{i}" for i in range(partitions)}, plan


# --- Must show 6: one event per write, none for a refused one -------------------------------------------------------


async def test_each_write_publishes_one_event_valid_against_its_schema(system: System, ray_driver: None) -> None:
    owner, friend = person(), person()
    collection = (
        await data().create_collection(owner, CollectionCreate(name="Books", item_schema=SCHEMA), request_id=rid())
    ).collection
    cid = collection.id
    renamed = await data().update_collection(owner, cid, {"name": "Novels"}, if_match=IfMatch(versions=(1,)))
    await data().put_member(owner, cid, friend.user_id, "viewer")
    await data().put_member(owner, cid, friend.user_id, "editor")
    item = (await data().create_item(friend, cid, ItemCreate(title="Dune", attributes={"size": 1}))).item
    batch = await data().create_items(
        owner,
        cid,
        ItemBatchCreate(
            items=[ItemCreate(title="A", attributes={"size": 2}), ItemCreate(title="B", attributes={"size": 3})]
        ),
    )
    replaced = await data().replace_item(
        owner, cid, item.id, ItemReplace(title="Dune II", attributes={"size": 5}), if_match=IfMatch(versions=(1,))
    )
    patched = await data().patch_item(friend, cid, item.id, {"tags": ["sf"]}, if_match=IfMatch(versions=(2,)))
    await data().delete_item(owner, cid, batch.batch.items[0].id, if_match=IfMatch(any=True))
    await data().remove_member(friend, cid, friend.user_id)
    await data().delete_collection(owner, cid, if_match=IfMatch(versions=(renamed.version,)))

    assert renamed.version == 2 and replaced.version == 2 and patched.version == 3 and patched.tags == ["sf"]
    raws = await published(system, cid)
    for raw in raws:
        validate_against_schema(raw)
    events = [decode(raw) for raw in raws]
    assert [short(e.type) for e in events] == [
        "created",
        "updated",
        "member_added",
        "member_changed",
        "item_created",
        "item_created",
        "item_created",
        "item_updated",
        "item_updated",
        "item_deleted",
        "member_removed",
        "deleted",
    ]
    assert all(e.partitionkey == cid for e in events)
    assert events[4].subject == f"collection/{cid}/item/{item.id}" and events[4].actor == friend.user_id
    assert events[-2].data["reason"] == "left"
    assert events[-1].data == {
        "collection_id": cid,
        "owner_id": owner.user_id,
        "version": 2,
        "items": 2,
        "reason": "deleted",
    }
    assert await admin_value(system, "SELECT count(*) FROM data.items WHERE collection_id = $1", cid) == 0


async def test_a_refused_write_leaves_no_row_and_no_event(system: System, ray_driver: None) -> None:
    owner = person()
    cid = await new_collection(owner, schema=SCHEMA)
    item = (await data().create_item(owner, cid, ItemCreate(title="kept", attributes={"size": 1}))).item
    before = await outbox_types(system, cid)

    with pytest.raises(Unprocessable) as invalid:
        await data().create_item(owner, cid, ItemCreate(title="bad", attributes={"size": -1, "code": "abc"}))
    with pytest.raises(Unprocessable) as batch:
        await data().create_items(
            owner, cid, ItemBatchCreate(items=[ItemCreate(title="ok", attributes={"size": 1}), ItemCreate(title="no")])
        )
    with pytest.raises(PreconditionFailed):
        await data().patch_item(owner, cid, item.id, {"title": "stale"}, if_match=IfMatch(versions=(7,)))
    with pytest.raises(Unprocessable) as large:
        await data().create_item(owner, cid, ItemCreate(title="big", attributes={"size": 1, "pad": "x" * 20000}))
    with pytest.raises(Unprocessable) as owner_member:  # the rule the members table's shape stands for
        await data().put_member(owner, cid, owner.user_id, "editor")
    with pytest.raises(Unprocessable) as bad_patch:
        await data().patch_item(owner, cid, item.id, {"title": None}, if_match=IfMatch(any=True))

    assert invalid.value.extra["code"] == "invalid-attributes"
    assert {e["path"] for e in invalid.value.extra["errors"]} == {"/size", "/code"}
    assert batch.value.extra["code"] == "invalid-attributes" and batch.value.extra["index"] == 1
    assert large.value.extra["code"] == "too-large" and owner_member.value.extra["code"] == "owner-not-member"
    assert bad_patch.value.extra["code"] == "invalid-patch"
    assert await admin_value(system, "SELECT count(*) FROM data.items WHERE collection_id = $1", cid) == 1
    assert (await data().get_item(owner, cid, item.id)).version == 1
    assert await admin_value(system, "SELECT count(*) FROM data.members WHERE collection_id = $1", cid) == 0
    assert await outbox_types(system, cid) == before
    assert [short(decode(raw).type) for raw in await published(system, cid)] == ["created", "item_created"]


# --- Must show 7: a user's deletion reaches the data service as an event ---------------------------------------------


async def test_deleting_a_user_deletes_their_collections_and_memberships(system: System, ray_driver: None) -> None:
    users = UsersClient()
    doomed, other = person(), person()
    await users.update_profile(doomed.user_id, "Soon Gone")  # a profile to delete
    owned = [await new_collection(doomed, name=f"Mine {i}") for i in range(2)]
    await data().create_item(doomed, owned[0], ItemCreate(title="one"))
    await data().create_item(doomed, owned[0], ItemCreate(title="two"))
    theirs = await new_collection(other)
    await data().put_member(other, theirs, doomed.user_id, "editor")
    await data().put_member(doomed, owned[1], other.user_id, "viewer")

    await users.delete_user(doomed.user_id, request_id=rid(), actor=str(uuid.uuid4()))

    async def gone() -> bool:
        owned_left = await admin_value(
            system, "SELECT count(*) FROM data.collections WHERE owner_id = $1::uuid", doomed.user_id
        )
        memberships = await admin_value(
            system, "SELECT count(*) FROM data.members WHERE user_id = $1::uuid", doomed.user_id
        )
        return owned_left == 0 and memberships == 0

    await eventually(gone, what="the data service to delete the user's collections and memberships")
    with pytest.raises(CollectionNotFound):
        await data().get_collection(other, owned[1])
    assert (await data().get_collection(other, theirs)).id == theirs
    removed = [decode(raw) for raw in await published(system, theirs)]
    assert [(short(e.type), e.data.get("reason")) for e in removed][-1] == ("member_removed", "user_deleted")
    for cid, items in ((owned[0], 2), (owned[1], 0)):
        raws = await published(system, cid)
        for raw in raws:
            validate_against_schema(raw)
        last = decode(raws[-1])
        assert short(last.type) == "deleted" and last.data["reason"] == "owner_deleted" and last.data["items"] == items
    assert await admin_value(system, "SELECT count(*) FROM data.items WHERE collection_id = $1", owned[0]) == 0


# --- If-Match under concurrency -------------------------------------------------------------------------------------


async def test_twenty_concurrent_patches_with_one_if_match_let_exactly_one_through(
    system: System, ray_driver: None
) -> None:
    owner = person()
    cid = await new_collection(owner)
    item = (await data().create_item(owner, cid, ItemCreate(title="contested"))).item

    results = await asyncio.gather(
        *(
            data().patch_item(owner, cid, item.id, {"attributes": {"by": i}}, if_match=IfMatch(versions=(1,)))
            for i in range(20)
        ),
        return_exceptions=True,
    )

    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1 and all(isinstance(r, PreconditionFailed) for r in lost) and len(lost) == 19
    assert (await data().get_item(owner, cid, item.id)).version == 2
    assert (await outbox_types(system, cid)).count("strata.data.collection.item_updated.v1") == 1
    with pytest.raises(ItemNotFound):  # a missing item is a 404 before any precondition
        await data().patch_item(owner, cid, str(uuid.uuid4()), {"title": "x"}, if_match=IfMatch(versions=(1,)))


# --- idempotency ----------------------------------------------------------------------------------------------------


async def test_an_idempotency_key_replays_the_first_answer_and_refuses_another_body(
    system: System, ray_driver: None
) -> None:
    owner = person()
    cid = await new_collection(owner)
    body = ItemCreate(title="once", attributes={"n": 1})

    first = await data().create_item(owner, cid, body, idempotency_key="k-1")
    again = await data().create_item(owner, cid, body, idempotency_key="k-1")

    async def attempt(key: str) -> Any:
        for _ in range(20):
            try:
                return await data().create_item(owner, cid, body, idempotency_key=key)
            except Conflict as exc:  # the first request still runs: retry as a client would
                assert exc.extra["code"] == "idempotency-in-progress"
                await asyncio.sleep(exc.retry_after or 0.2)
        raise AssertionError("still in progress after 20 tries")

    concurrent = await asyncio.gather(*(attempt("k-2") for _ in range(10)))

    assert not first.replayed and again.replayed and again.item == first.item
    assert sum(not c.replayed for c in concurrent) == 1 and len({c.item.model_dump_json() for c in concurrent}) == 1
    assert await admin_value(system, "SELECT count(*) FROM data.items WHERE collection_id = $1", cid) == 2
    assert (await outbox_types(system, cid)).count("strata.data.collection.item_created.v1") == 2
    with pytest.raises(Unprocessable) as reused:
        await data().create_item(owner, cid, ItemCreate(title="other"), idempotency_key="k-1")
    assert reused.value.extra["code"] == "idempotency-key-reused"
    with pytest.raises(Unprocessable) as bad_key:
        await data().create_item(owner, cid, body, idempotency_key="tab\there")
    assert bad_key.value.extra["code"] == "invalid-idempotency-key"
    # A collection POST under a key replays too.
    made = await data().create_collection(owner, CollectionCreate(name="Once"), idempotency_key="c-1")
    remade = await data().create_collection(owner, CollectionCreate(name="Once"), idempotency_key="c-1")
    assert remade.replayed and remade.collection == made.collection


# --- roles ----------------------------------------------------------------------------------------------------------


async def _backend_waits_on_a_lock(system: System, pid: int) -> bool:
    waiting = await admin_value(system, "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid)
    return bool(waiting)


async def _unit_of_work_connection(system: System) -> asyncpg.Connection:
    conn = await asyncpg.connect(system.admin_dsn)
    await conn.execute("SET search_path TO data")
    return conn


async def test_a_membership_change_and_an_editors_write_never_overlap(system: System, ray_driver: None) -> None:
    """An editor removed while their write waits for the collection is refused; a write already running when the
    removal comes commits first, and its event comes before the removal's. Two connections run the service's own
    units of work, so each step is ordered by the test, not by timing."""
    owner, editor = person(), person()
    cid = await new_collection(owner)
    await data().put_member(owner, cid, editor.user_id, "editor")
    item = (await data().create_item(owner, cid, ItemCreate(title="shared"))).item
    limits = DataLimits.from_settings(system.runtime.settings)
    first, second = await _unit_of_work_connection(system), await _unit_of_work_connection(system)
    try:
        # The removal first: the editor's write waits for the collection, then finds them a stranger.
        removal = first.transaction()
        await removal.start()
        await _members.remove_member(first, owner, cid, editor.user_id)
        second_pid = await second.fetchval("SELECT pg_backend_pid()")

        async def editors_write() -> None:
            async with second.transaction():
                body = ItemReplace(title="too late")
                await _items.replace_item(second, editor, cid, item.id, body, limits=limits, if_match=IfMatch(any=True))

        write = asyncio.create_task(editors_write())
        await eventually(lambda: _backend_waits_on_a_lock(system, second_pid), what="the write to wait for the lock")
        await removal.commit()
        with pytest.raises(CollectionNotFound):
            await write
        assert (await data().get_item(owner, cid, item.id)).title == "shared"

        # The write first: the removal waits until it commits, and their events come in that order.
        await data().put_member(owner, cid, editor.user_id, "editor")
        change = first.transaction()
        await change.start()
        body = ItemReplace(title="in time")
        await _items.replace_item(first, editor, cid, item.id, body, limits=limits, if_match=IfMatch(any=True))

        async def removal_now() -> None:
            async with second.transaction():
                await _members.remove_member(second, owner, cid, editor.user_id)

        remove = asyncio.create_task(removal_now())
        await eventually(lambda: _backend_waits_on_a_lock(system, second_pid), what="the removal to wait for the lock")
        await change.commit()
        await remove
    finally:
        await first.close()
        await second.close()
    assert (await data().get_item(owner, cid, item.id)).title == "in time"
    events = [short(t) for t in await outbox_types(system, cid)]
    assert events[-4:] == ["member_removed", "member_added", "item_updated", "member_removed"], events


async def test_a_change_that_changes_nothing_makes_no_version_and_no_event(system: System, ray_driver: None) -> None:
    owner = person()
    cid = await new_collection(owner)
    item = (await data().create_item(owner, cid, ItemCreate(title="same", attributes={"n": 1}, tags=["b", "a"]))).item
    v1 = IfMatch(versions=(1,))
    assert (await data().patch_item(owner, cid, item.id, {"title": "same", "tags": ["a", "b"]}, if_match=v1)) == item
    same = ItemReplace(title="same", attributes={"n": 1}, tags=["a", "b", "a"])
    assert (await data().replace_item(owner, cid, item.id, same, if_match=v1)) == item
    # 1 and true are different JSON, though Python calls them equal: that is a change.
    changed = await data().patch_item(owner, cid, item.id, {"attributes": {"n": True}}, if_match=v1)
    assert changed.version == 2 and changed.attributes == {"n": True}
    assert [short(t) for t in await outbox_types(system, cid)] == ["created", "item_created", "item_updated"]


async def test_roles_decide_what_owner_editor_viewer_admin_and_stranger_may_do(
    system: System, ray_driver: None
) -> None:
    owner, editor, viewer, admin, stranger = person(), person(), person(), person(admin=True), person()
    cid = await new_collection(owner)
    await data().put_member(owner, cid, editor.user_id, "editor")
    await data().put_member(owner, cid, viewer.user_id, "viewer")
    item = (await data().create_item(editor, cid, ItemCreate(title="shared"))).item
    anyone = IfMatch(any=True)

    for reader in (owner, editor, viewer, admin):
        assert (await data().get_collection(reader, cid)).id == cid
        assert (await data().get_item(reader, cid, item.id)).id == item.id
        assert len((await data().list_members(reader, cid)).items) == 2
    with pytest.raises(CollectionNotFound):
        await data().get_collection(stranger, cid)
    with pytest.raises(CollectionNotFound):
        await data().get_item(stranger, cid, item.id)
    with pytest.raises(CollectionNotFound):
        await data().create_item(stranger, cid, ItemCreate(title="no"))
    for reader in (viewer, admin):
        with pytest.raises(Forbidden):
            await data().create_item(reader, cid, ItemCreate(title="no"))
        with pytest.raises(Forbidden):
            await data().patch_item(reader, cid, item.id, {"title": "no"}, if_match=anyone)
    for not_owner in (editor, viewer, admin):
        with pytest.raises(Forbidden):
            await data().update_collection(not_owner, cid, {"name": "no"}, if_match=anyone)
        with pytest.raises(Forbidden):
            await data().put_member(not_owner, cid, stranger.user_id, "viewer")
        with pytest.raises(Forbidden):
            await data().delete_collection(not_owner, cid, if_match=anyone)
    with pytest.raises(Forbidden):
        await data().remove_member(editor, cid, viewer.user_id)
    assert (await data().patch_item(editor, cid, item.id, {"title": "edited"}, if_match=anyone)).title == "edited"

    listed = {e.id: e.role for e in (await data().list_collections(viewer)).items}
    assert listed == {cid: "viewer"}
    assert cid not in {e.id for e in (await data().list_collections(stranger)).items}
    cursor, roles = None, {}
    for _ in range(50):  # every collection of the session, page by page
        everything = await data().list_collections(admin, everyone=True, limit=200, cursor=cursor)
        roles.update({e.id: e.role for e in everything.items})
        if (cursor := everything.next_cursor) is None:
            break
    assert roles[cid] == "admin"
    with pytest.raises(Forbidden):
        await data().list_collections(viewer, everyone=True)
    await data().remove_member(viewer, cid, viewer.user_id)  # leaving
    with pytest.raises(CollectionNotFound):
        await data().get_collection(viewer, cid)


# --- batch ----------------------------------------------------------------------------------------------------------


async def test_a_batch_is_all_or_nothing_and_bounded(system: System, ray_driver: None) -> None:
    owner = person()
    cid = await new_collection(owner, schema=SCHEMA)
    good = [ItemCreate(title=f"i{i}", attributes={"size": i}) for i in range(5)]

    created = await data().create_items(owner, cid, ItemBatchCreate(items=good))
    with pytest.raises(Unprocessable) as refused:
        await data().create_items(owner, cid, ItemBatchCreate(items=[*good, ItemCreate(title="x", attributes={})]))
    with pytest.raises(Unprocessable) as too_many:
        await data().create_items(
            owner, cid, ItemBatchCreate(items=[ItemCreate(title="t", attributes={"size": 1})] * 101)
        )

    assert [i.title for i in created.batch.items] == [f"i{i}" for i in range(5)]
    assert refused.value.extra["index"] == 5 and too_many.value.extra["code"] == "batch-too-large"
    assert await admin_value(system, "SELECT count(*) FROM data.items WHERE collection_id = $1", cid) == 5
    page = await data().list_items(owner, cid, ItemQuery())
    assert [i.title for i in page.items] == [f"i{i}" for i in range(5)]


# --- listing --------------------------------------------------------------------------------------------------------


async def test_paging_while_items_are_inserted_lists_every_earlier_item_once_in_order(
    system: System, ray_driver: None
) -> None:
    owner = person()
    cid = await new_collection(owner)
    for chunk in range(3):
        await data().create_items(
            owner, cid, ItemBatchCreate(items=[ItemCreate(title=f"e{chunk}-{i}") for i in range(50)])
        )
    earlier = [i.id for i in (await data().list_items(owner, cid, ItemQuery(limit=200))).items]

    gate = asyncio.Semaphore(16)  # 200 inserts, 16 in flight at a time: within the service's queue

    async def insert_one(i: int) -> None:
        async with gate:
            await data().create_item(owner, cid, ItemCreate(title=f"new{i}"))

    async def insert() -> None:
        await asyncio.gather(*(insert_one(i) for i in range(200)))

    async def page_through() -> list[str]:
        seen: list[str] = []
        cursor = None
        while True:
            page = await data().list_items(owner, cid, ItemQuery(limit=7, cursor=cursor))
            seen += [i.id for i in page.items]
            if page.next_cursor is None:
                return seen
            cursor = page.next_cursor
            await asyncio.sleep(0)

    seen, _ = await asyncio.gather(page_through(), insert())

    assert [i for i in seen if i in set(earlier)] == earlier and len(seen) == len(set(seen))
    page = await data().list_items(owner, cid, ItemQuery(limit=2))
    assert page.next_cursor is not None
    tampered = page.next_cursor[:-2] + ("AA" if not page.next_cursor.endswith("AA") else "BB")
    for cursor, query in (
        (tampered, ItemQuery(limit=2)),
        (page.next_cursor, ItemQuery(limit=2, order="desc")),
        ("garbage", ItemQuery()),
    ):
        with pytest.raises(InvalidCursor):
            await data().list_items(owner, cid, query.model_copy(update={"cursor": cursor}))
    with pytest.raises(InvalidCursor):  # another collection's listing
        await data().list_items(owner, await new_collection(owner), ItemQuery(cursor=page.next_cursor))


async def test_filters_and_orders(system: System, ray_driver: None) -> None:
    owner = person()
    cid = await new_collection(owner)
    a = (await data().create_item(owner, cid, ItemCreate(title="a", tags=["x", "y"], attributes={"c": "red"}))).item
    b = (await data().create_item(owner, cid, ItemCreate(title="b", tags=["x"], attributes={"c": "blue"}))).item
    touched = await data().patch_item(owner, cid, a.id, {"attributes": {"n": 1}}, if_match=IfMatch(any=True))

    assert [i.id for i in (await data().list_items(owner, cid, ItemQuery(tags=("x", "y")))).items] == [a.id]
    blue = await data().list_items(owner, cid, ItemQuery(attributes={"c": "blue"}))
    assert [i.id for i in blue.items] == [b.id]
    newest = await data().list_items(owner, cid, ItemQuery(sort="updated", order="desc"))
    assert [i.id for i in newest.items] == [a.id, b.id]
    since = await data().list_items(owner, cid, ItemQuery(updated_since=touched.updated_at))
    assert [i.id for i in since.items] == [a.id]
    with pytest.raises(Unprocessable):
        await data().list_items(owner, cid, ItemQuery(limit=0))


# --- hostile input --------------------------------------------------------------------------------------------------


async def test_hostile_input_is_a_clear_client_error(system: System, ray_driver: None) -> None:
    owner = person()
    cid = await new_collection(owner)
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(40):
        node["a"] = {}
        node = node["a"]
    cases: list[tuple[Any, str | None]] = [
        (data().create_item(owner, cid, ItemCreate(title="d", attributes=deep)), "too-deep"),
        (data().create_collection(owner, CollectionCreate(name="s", item_schema={"type": "nope"})), "invalid-schema"),
        (
            data().create_collection(owner, CollectionCreate(name="s", item_schema={"$ref": "https://evil.test/s"})),
            "invalid-schema",
        ),
        (
            data().create_collection(owner, CollectionCreate(name="s", item_schema={"enum": ["x" * 100] * 400})),
            "invalid-schema",
        ),
        (
            data().create_collection(owner, CollectionCreate(name="s", item_schema={"pattern": "(?<=a)b"})),
            "invalid-schema",
        ),
    ]
    for call, code in cases:
        with pytest.raises(Unprocessable) as refused:
            await call
        assert refused.value.extra["code"] == code
    with pytest.raises(CollectionNotFound):
        await data().get_collection(owner, "not-a-uuid")
    with pytest.raises(ItemNotFound):
        await data().get_item(owner, cid, "not-a-uuid")
    # A catastrophic-backtracking pattern runs on RE2: answered at once, no hung replica.
    redos = await new_collection(owner, schema={"properties": {"s": {"type": "string", "pattern": "^(a+)+$"}}})
    with pytest.raises(Unprocessable):
        await asyncio.wait_for(
            data().create_item(owner, redos, ItemCreate(title="r", attributes={"s": "a" * 5000 + "!"})), 10
        )
