"""Items of a collection: create (one or a batch, idempotent), read, list, replace, patch, delete.

Units of work over an asyncpg connection inside a transaction (``Database.run_in_transaction``): every change
records one event per item on ``strata.data.collection.v1``, keyed by the collection id (subject
``collection/<cid>/item/<iid>``, actor the caller), in the same transaction. Every query names ``collection_id``,
so it touches one partition of ``data.items``.

Writes first read the collection and the caller's role with ``FOR SHARE`` (its schema cannot change under them),
then lock the item ``FOR UPDATE`` and compare ``If-Match`` with its version: of concurrent changes naming one
version, exactly one succeeds and the rest are :class:`~strata.schemas.PreconditionFailed`. A missing item is
:class:`~strata.schemas.ItemNotFound` before any precondition.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from pydantic import BaseModel, JsonValue

from strata.schemas import (
    CreatedItem,
    CreatedItems,
    DataCaller,
    IfMatch,
    Item,
    ItemBatch,
    ItemBatchCreate,
    ItemCreate,
    ItemNotFound,
    ItemPage,
    ItemQuery,
    ItemReplace,
    PreconditionFailed,
    Unprocessable,
)
from strata.schemas.events import (
    ITEM_CREATED,
    ITEM_DELETED,
    ITEM_UPDATED,
    EventType,
    ItemCreated,
    ItemDeleted,
    ItemUpdated,
)
from strata.serve_apps.data import _idempotency
from strata.serve_apps.data._access import CollectionAccess, caller_uuid, collection_access
from strata.serve_apps.data._collections import record_collection_event
from strata.serve_apps.data._cursors import next_cursor, verify_cursor
from strata.serve_apps.data._item_schemas import ItemChecks, item_validator
from strata.serve_apps.data._limits import DataLimits, check_attributes, check_json_bounds, check_limit
from strata.serve_apps.data._merge_patch import patched

ITEM_COLUMNS = (
    "id::text AS id, collection_id::text AS collection_id, title, attributes::text AS attributes, tags, version,"
    " created_by::text AS created_by, updated_by::text AS updated_by, created_at, updated_at"
)
_SORT_COLUMNS = {"created": "created_at", "updated": "updated_at"}
_DEFAULT_CHECKS = ItemChecks()  # the loop's default executor, for callers that bring no executor of their own


def public_item(row: asyncpg.Record | dict[str, Any]) -> Item:
    return Item(
        id=row["id"],
        collection_id=row["collection_id"],
        title=row["title"],
        attributes=orjson.loads(row["attributes"]),
        tags=list(row["tags"]),
        version=row["version"],
        created_by=row["created_by"],
        updated_by=row["updated_by"],
        created_at=row["created_at"].isoformat(),
        updated_at=row["updated_at"].isoformat(),
    )


def item_uuid(item_id: str) -> str:
    """``item_id`` as a canonical UUID; :class:`ItemNotFound` when it is none (it names no item)."""
    try:
        return str(uuid.UUID(item_id))
    except (ValueError, TypeError, AttributeError):
        raise ItemNotFound("no such item") from None


def _same_json(a: dict[str, JsonValue], b: dict[str, JsonValue]) -> bool:
    """Whether two objects are the same JSON (as text with sorted keys: ``1``, ``1.0`` and ``true`` differ, which
    Python's ``==`` would call equal)."""
    return orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(b, option=orjson.OPT_SORT_KEYS)


def _clean_tags(tags: list[str]) -> list[str]:
    return sorted(set(tags))


async def _checked_attributes(
    access: CollectionAccess,
    items: list[dict[str, JsonValue]],
    limits: DataLimits,
    checks: ItemChecks,
    *,
    batch: bool,
) -> list[str]:
    """Each of ``items`` as JSON text, within the limits and valid for the collection's schema.

    The limits are checked first, on the loop (linear in the request's bytes); the schema checks of all the
    request's items share one budget (``data_max_validation_steps``) and run off the loop (``checks``).
    """
    encoded = []
    for index, attributes in enumerate(items):
        try:
            encoded.append(check_attributes(attributes, limits).decode())
        except Unprocessable as exc:
            if batch:
                exc.extra["index"] = index
            raise
    if access.item_schema is not None:
        validator = item_validator(access.id, access.version, access.item_schema)
        await checks.check(validator, items, steps=limits.max_validation_steps, batch=batch)
    return encoded


async def _record_item_event(
    conn: asyncpg.Connection, item: Item, *, deleted: bool = False, request_id: str | None, actor: str
) -> None:
    subject = f"collection/{item.collection_id}/item/{item.id}"
    event: EventType
    payload: BaseModel
    if deleted:
        event, payload = (
            ITEM_DELETED,
            ItemDeleted(collection_id=item.collection_id, item_id=item.id, version=item.version),
        )
    elif item.version == 1:
        event, payload = ITEM_CREATED, ItemCreated(collection_id=item.collection_id, item_id=item.id, version=1)
    else:
        event, payload = (
            ITEM_UPDATED,
            ItemUpdated(collection_id=item.collection_id, item_id=item.id, version=item.version),
        )
    await record_collection_event(
        conn, event, payload, item.collection_id, subject=subject, request_id=request_id, actor=actor
    )


_INSERT_ITEMS = (
    "INSERT INTO data.items"
    " (collection_id, id, title, attributes, tags, created_by, updated_by, created_at, updated_at)"
    " SELECT $1::uuid, u.id, u.title, u.attributes::jsonb, ARRAY(SELECT jsonb_array_elements_text(u.tags::jsonb)),"
    " $2::uuid, $2::uuid, t.at, t.at"
    " FROM unnest($3::uuid[], $4::text[], $5::text[], $6::text[]) WITH ORDINALITY AS u(id, title, attributes, tags, n)"
    # One microsecond apart, in the batch's order: a listing by creation shows them as they were sent.
    " CROSS JOIN LATERAL (SELECT now() + (u.n - 1) * interval '1 microsecond' AS at) t ORDER BY u.n"
    f" RETURNING {ITEM_COLUMNS}"
)


async def _insert_items(
    conn: asyncpg.Connection,
    access: CollectionAccess,
    bodies: list[ItemCreate],
    limits: DataLimits,
    author: str,
    *,
    batch: bool,
    request_id: str | None,
    checks: ItemChecks,
) -> list[Item]:
    access.require_writer("create items")
    attributes = await _checked_attributes(access, [body.attributes for body in bodies], limits, checks, batch=batch)
    ids = [str(uuid.uuid4()) for _ in bodies]
    rows = await conn.fetch(
        _INSERT_ITEMS,
        access.id,
        author,
        ids,
        [body.title for body in bodies],
        attributes,
        [orjson.dumps(_clean_tags(body.tags)).decode() for body in bodies],
    )
    by_id = {row["id"]: public_item(row) for row in rows}
    items = [by_id[item_id] for item_id in ids]
    for item in items:
        await _record_item_event(conn, item, request_id=request_id, actor=author)
    return items


async def create_item(
    conn: asyncpg.Connection,
    caller: DataCaller,
    collection_id: str,
    body: ItemCreate,
    *,
    limits: DataLimits,
    idempotency_key: str | None = None,
    request_id: str | None = None,
    checks: ItemChecks = _DEFAULT_CHECKS,
) -> CreatedItem:
    """A new item (owner or editor), version 1; records ``item_created``."""
    author = caller_uuid(caller)
    request = _idempotency.idempotent_request(
        author, "create_item", idempotency_key, {"collection_id": collection_id, "body": body.model_dump(mode="json")}
    )
    # Authorized before a stored answer is replayed: a replay answers only who may still make the request now.
    access = await collection_access(conn, caller, collection_id, lock="share")
    access.require_writer("create items")
    replayed = await _idempotency.replay(conn, request, CreatedItem, wait_s=limits.idempotency_wait_s)
    if replayed is not None:
        return replayed
    (item,) = await _insert_items(
        conn, access, [body], limits, author, batch=False, request_id=request_id, checks=checks
    )
    created = CreatedItem(item=item)
    location = f"/v1/collections/{item.collection_id}/items/{item.id}"
    await _idempotency.store(conn, request, created, status=201, location=location, ttl_s=limits.idempotency_ttl_s)
    return created


async def create_items(
    conn: asyncpg.Connection,
    caller: DataCaller,
    collection_id: str,
    body: ItemBatchCreate,
    *,
    limits: DataLimits,
    idempotency_key: str | None = None,
    request_id: str | None = None,
    checks: ItemChecks = _DEFAULT_CHECKS,
) -> CreatedItems:
    """Up to ``data_max_batch_items`` items, all or none; one ``item_created`` per item.

    An item the collection's schema refuses makes the whole batch :class:`Unprocessable` (``index`` names it).
    """
    if len(body.items) > limits.max_batch_items:
        raise Unprocessable(f"a batch holds at most {limits.max_batch_items} items", code="batch-too-large")
    author = caller_uuid(caller)
    request = _idempotency.idempotent_request(
        author, "create_items", idempotency_key, {"collection_id": collection_id, "body": body.model_dump(mode="json")}
    )
    access = await collection_access(conn, caller, collection_id, lock="share")  # authorized first, as above
    access.require_writer("create items")
    replayed = await _idempotency.replay(conn, request, CreatedItems, wait_s=limits.idempotency_wait_s)
    if replayed is not None:
        return replayed
    items = await _insert_items(
        conn, access, list(body.items), limits, author, batch=True, request_id=request_id, checks=checks
    )
    created = CreatedItems(batch=ItemBatch(items=items))
    location = f"/v1/collections/{access.id}/items"
    await _idempotency.store(conn, request, created, status=201, location=location, ttl_s=limits.idempotency_ttl_s)
    return created


async def get_item(conn: asyncpg.Connection, caller: DataCaller, collection_id: str, item_id: str) -> Item:
    """One item, if the caller may read the collection."""
    access = await collection_access(conn, caller, collection_id)
    row = await conn.fetchrow(
        f"SELECT {ITEM_COLUMNS} FROM data.items WHERE collection_id = $1 AND id = $2", access.id, item_uuid(item_id)
    )
    if row is None:
        raise ItemNotFound("no such item")
    return public_item(row)


def _query_listing(collection_id: str, query: ItemQuery, updated_since: datetime | None) -> dict[str, JsonValue]:
    return {
        "listing": "items",
        "collection": collection_id,
        "sort": query.sort,
        "order": query.order,
        "tags": list[JsonValue](sorted(set(query.tags))),
        "attributes": query.attributes,
        "updated_since": None if updated_since is None else updated_since.isoformat(),
    }


def _updated_since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except (ValueError, TypeError):
        raise Unprocessable("updated_since is an ISO 8601 moment", code="invalid-updated-since") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise Unprocessable("updated_since needs a time zone (Z or +hh:mm)", code="invalid-updated-since")
    return moment


async def list_items(
    conn: asyncpg.Connection, caller: DataCaller, collection_id: str, query: ItemQuery, *, limits: DataLimits
) -> ItemPage:
    """One page of the collection's items as ``query`` filters and orders them (keyset on (sort moment, id)).

    Items that existed when a listing began are each listed once, in order, whatever is written meanwhile.
    """
    check_limit(query.limit, limits)
    if len(query.tags) > 32:
        raise Unprocessable("filter by at most 32 tags", code="invalid-query")
    if query.attributes is not None:
        check_attributes(query.attributes, limits)
    since = _updated_since(query.updated_since)
    access = await collection_access(conn, caller, collection_id)
    listing = _query_listing(access.id, query, since)
    after = verify_cursor(limits.cursor_key, listing, query.cursor) if query.cursor else None
    column = _SORT_COLUMNS[query.sort]
    direction, compare = ("ASC", ">") if query.order == "asc" else ("DESC", "<")
    conditions = ["collection_id = $1"]
    args: list[Any] = [access.id]
    if query.tags:
        args.append(sorted(set(query.tags)))
        conditions.append(f"tags @> ${len(args)}::text[]")
    if query.attributes is not None:
        args.append(orjson.dumps(query.attributes).decode())
        conditions.append(f"attributes @> ${len(args)}::jsonb")
    if since is not None:
        args.append(since)
        conditions.append(f"updated_at >= ${len(args)}")
    if after is not None:
        args.extend([after.moment, after.id])
        conditions.append(f"({column}, id) {compare} (${len(args) - 1}, ${len(args)}::uuid)")
    args.append(query.limit + 1)
    rows = await conn.fetch(
        f"SELECT {ITEM_COLUMNS} FROM data.items WHERE {' AND '.join(conditions)}"
        f" ORDER BY {column} {direction}, id {direction} LIMIT ${len(args)}",
        *args,
    )
    page_rows = [dict(r) for r in rows]
    return ItemPage(
        items=[public_item(row) for row in rows[: query.limit]],
        next_cursor=next_cursor(limits.cursor_key, listing, page_rows, query.limit, moment=column, row_id="id"),
    )


async def _locked_item(
    conn: asyncpg.Connection, caller: DataCaller, collection_id: str, item_id: str, if_match: IfMatch, action: str
) -> tuple[CollectionAccess, Item]:
    """The collection (shared lock) and the item (locked for update) a change may go on with."""
    access = await collection_access(conn, caller, collection_id, lock="share")
    access.require_writer(action)
    row = await conn.fetchrow(
        f"SELECT {ITEM_COLUMNS} FROM data.items WHERE collection_id = $1 AND id = $2 FOR UPDATE",
        access.id,
        item_uuid(item_id),
    )
    if row is None:
        raise ItemNotFound("no such item")
    item = public_item(row)
    if not if_match.matches(item.version):
        raise PreconditionFailed("the item changed since this version was read")
    return access, item


async def _write_item(
    conn: asyncpg.Connection,
    access: CollectionAccess,
    item: Item,
    body: ItemReplace,
    limits: DataLimits,
    author: str,
    request_id: str | None,
    checks: ItemChecks,
) -> Item:
    """The item after ``body`` replaced it: a new version and its event, or ``item`` as it is when nothing changes.

    A PUT or PATCH that leaves the title, attributes and tags as they are is no change: no version, no event (so a
    client replaying the same change after a timeout does not make a spurious one).
    """
    unchanged = body.title == item.title and _clean_tags(body.tags) == item.tags
    if unchanged and _same_json(body.attributes, item.attributes):
        return item
    (attributes,) = await _checked_attributes(access, [body.attributes], limits, checks, batch=False)
    row = await conn.fetchrow(
        "UPDATE data.items SET title = $3, attributes = $4::jsonb, tags = $5, version = version + 1,"
        " updated_by = $6, updated_at = now()"
        f" WHERE collection_id = $1 AND id = $2 RETURNING {ITEM_COLUMNS}",
        access.id,
        item.id,
        body.title,
        attributes,
        _clean_tags(body.tags),
        author,
    )
    assert row is not None  # locked in this transaction
    updated = public_item(row)
    await _record_item_event(conn, updated, request_id=request_id, actor=author)
    return updated


async def replace_item(
    conn: asyncpg.Connection,
    caller: DataCaller,
    collection_id: str,
    item_id: str,
    body: ItemReplace,
    *,
    limits: DataLimits,
    if_match: IfMatch,
    request_id: str | None = None,
    checks: ItemChecks = _DEFAULT_CHECKS,
) -> Item:
    """Replace the item's title, attributes and tags (owner or editor); records ``item_updated``."""
    check_attributes(body.attributes, limits)
    access, item = await _locked_item(conn, caller, collection_id, item_id, if_match, "change items")
    return await _write_item(conn, access, item, body, limits, caller_uuid(caller), request_id, checks)


async def patch_item(
    conn: asyncpg.Connection,
    caller: DataCaller,
    collection_id: str,
    item_id: str,
    patch: dict[str, JsonValue],
    *,
    limits: DataLimits,
    if_match: IfMatch,
    request_id: str | None = None,
    checks: ItemChecks = _DEFAULT_CHECKS,
) -> Item:
    """Apply a JSON Merge Patch to the item's title, attributes and tags (owner or editor); records ``item_updated``.

    The result must be a valid :class:`~strata.schemas.ItemReplace` (else ``invalid-patch``) and satisfy the limits
    and the collection's schema.
    """
    check_json_bounds(
        patch, max_bytes=limits.max_attributes_bytes + 8192, max_depth=limits.max_json_depth + 1, what="the patch"
    )
    access, item = await _locked_item(conn, caller, collection_id, item_id, if_match, "change items")
    target: dict[str, JsonValue] = {"title": item.title, "attributes": item.attributes, "tags": list(item.tags)}
    body = patched(ItemReplace, target, patch)
    return await _write_item(conn, access, item, body, limits, caller_uuid(caller), request_id, checks)


async def delete_item(
    conn: asyncpg.Connection,
    caller: DataCaller,
    collection_id: str,
    item_id: str,
    *,
    if_match: IfMatch,
    request_id: str | None = None,
) -> None:
    """Delete the item (owner or editor); records ``item_deleted``."""
    access, item = await _locked_item(conn, caller, collection_id, item_id, if_match, "delete items")
    await conn.execute("DELETE FROM data.items WHERE collection_id = $1 AND id = $2", access.id, item.id)
    author = caller_uuid(caller)
    await _record_item_event(conn, item, deleted=True, request_id=request_id, actor=author)
