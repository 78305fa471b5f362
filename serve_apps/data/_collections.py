"""Collections: create (idempotent), list, read, update (JSON Merge Patch), delete with everything in them.

Units of work over an asyncpg connection inside a transaction (``Database.run_in_transaction``): every change
records its event on ``strata.data.collection.v1`` in the same transaction, keyed by the collection id (subject
``collection/<id>``, actor the caller). Who may do what: :mod:`~strata.serve_apps.data._access`.
"""

from __future__ import annotations

import uuid

import asyncpg
import orjson
from pydantic import BaseModel, JsonValue

from strata.actors.outbox import record_event
from strata.schemas import (
    Collection,
    CollectionCreate,
    CollectionEntry,
    CollectionPage,
    CreatedCollection,
    DataCaller,
    Forbidden,
    IfMatch,
    PreconditionFailed,
)
from strata.schemas.events import (
    COLLECTION_CREATED,
    COLLECTION_DELETED,
    COLLECTION_UPDATED,
    CollectionCreated,
    CollectionDeleted,
    CollectionUpdated,
    EventType,
    new_event,
)
from strata.serve_apps.data import _idempotency
from strata.serve_apps.data._access import (
    COLLECTION_COLUMNS,
    ROLE,
    access_role,
    caller_uuid,
    collection_access,
    public_collection,
)
from strata.serve_apps.data._cursors import next_cursor, verify_cursor
from strata.serve_apps.data._item_schemas import check_item_schema
from strata.serve_apps.data._limits import DataLimits, check_json_bounds, check_limit
from strata.serve_apps.data._merge_patch import patched


async def record_collection_event(
    conn: asyncpg.Connection,
    event: EventType,
    payload: BaseModel,
    collection_id: str,
    *,
    subject: str | None = None,
    request_id: str | None,
    actor: str | None,
) -> None:
    """Record one event about collection ``collection_id`` (keyed by it, so its events stay in order)."""
    await record_event(
        conn,
        new_event(
            event,
            payload,
            subject=subject or f"collection/{collection_id}",
            key=collection_id,
            request_id=request_id,
            actor=actor,
        ),
    )


def check_if_match(if_match: IfMatch, version: int) -> None:
    if not if_match.matches(version):
        raise PreconditionFailed("the collection changed since this version was read")


async def create_collection(
    conn: asyncpg.Connection,
    caller: DataCaller,
    body: CollectionCreate,
    *,
    limits: DataLimits,
    idempotency_key: str | None = None,
    request_id: str | None = None,
) -> CreatedCollection:
    """A new collection owned by the caller (version 1); records ``collection.created``."""
    owner = caller_uuid(caller)
    if body.item_schema is not None:
        check_item_schema(body.item_schema, limits)
    request = _idempotency.idempotent_request(
        owner, "create_collection", idempotency_key, {"body": body.model_dump(mode="json")}
    )
    replayed = await _idempotency.replay(conn, request, CreatedCollection, wait_s=limits.idempotency_wait_s)
    if replayed is not None:
        return replayed
    collection_id = str(uuid.uuid4())
    row = await conn.fetchrow(
        "INSERT INTO data.collections AS c (id, owner_id, name, description, item_schema)"
        f" VALUES ($1, $2, $3, $4, $5::jsonb) RETURNING {COLLECTION_COLUMNS}",
        collection_id,
        owner,
        body.name,
        body.description,
        None if body.item_schema is None else orjson.dumps(body.item_schema).decode(),
    )
    assert row is not None
    created = CreatedCollection(collection=public_collection(row))
    await record_collection_event(
        conn,
        COLLECTION_CREATED,
        CollectionCreated(collection_id=collection_id, owner_id=owner, name=body.name, version=1),
        collection_id,
        request_id=request_id,
        actor=owner,
    )
    location = f"/v1/collections/{collection_id}"
    await _idempotency.store(conn, request, created, status=201, location=location, ttl_s=limits.idempotency_ttl_s)
    return created


async def list_collections(
    conn: asyncpg.Connection,
    caller: DataCaller,
    *,
    limits: DataLimits,
    cursor: str | None = None,
    limit: int = 50,
    everyone: bool = False,
) -> CollectionPage:
    """The caller's collections (owned or shared), oldest first; with ``everyone`` (``data:admin`` only) all of them."""
    user = caller_uuid(caller)
    check_limit(limit, limits)
    if everyone and not caller.admin:
        raise Forbidden("listing every collection needs data:admin")
    listing: dict[str, JsonValue] = {"listing": "collections", "caller": user, "everyone": everyone}
    after = verify_cursor(limits.cursor_key, listing, cursor) if cursor else None
    rows = await conn.fetch(
        f"SELECT {COLLECTION_COLUMNS}, {ROLE} FROM data.collections c"
        " LEFT JOIN data.members m ON m.collection_id = c.id AND m.user_id = $2::uuid"
        " WHERE ($1 OR c.owner_id = $2::uuid OR m.user_id IS NOT NULL)"
        " AND ($3::timestamptz IS NULL OR (c.created_at, c.id) > ($3, $4::uuid))"
        " ORDER BY c.created_at, c.id LIMIT $5",
        everyone,
        user,
        after.moment if after else None,
        after.id if after else None,
        limit + 1,
    )
    entries = []
    for row in rows[:limit]:
        role = access_role(row["role"], caller) or "admin"
        entries.append(CollectionEntry(**public_collection(row).model_dump(), role=role))
    page_rows = [dict(r) for r in rows]
    return CollectionPage(
        items=entries,
        next_cursor=next_cursor(limits.cursor_key, listing, page_rows, limit, moment="created_at", row_id="id"),
    )


async def get_collection(conn: asyncpg.Connection, caller: DataCaller, collection_id: str) -> Collection:
    """The collection, if the caller may see it."""
    return (await collection_access(conn, caller, collection_id)).collection


_PATCHABLE = ("name", "description", "item_schema")


async def update_collection(
    conn: asyncpg.Connection,
    caller: DataCaller,
    collection_id: str,
    patch: dict[str, JsonValue],
    *,
    limits: DataLimits,
    if_match: IfMatch,
    request_id: str | None = None,
) -> Collection:
    """Apply a JSON Merge Patch to the collection's name, description and item schema (owner only).

    A new item schema applies to items written from then on; items already stored are not checked again.
    """
    check_json_bounds(
        patch, max_bytes=limits.max_schema_bytes + 4096, max_depth=limits.max_json_depth + 2, what="the patch"
    )
    access = await collection_access(conn, caller, collection_id, lock="update")
    access.require_owner("change it")
    check_if_match(if_match, access.version)
    current = access.collection
    target: dict[str, JsonValue] = {"name": current.name, "description": current.description}
    if current.item_schema is not None:
        target["item_schema"] = current.item_schema
    changed = patched(CollectionCreate, target, patch)
    schema_changed = changed.item_schema != current.item_schema
    if schema_changed and changed.item_schema is not None:
        check_item_schema(changed.item_schema, limits)
    row = await conn.fetchrow(
        "UPDATE data.collections AS c SET name = $2, description = $3, item_schema = $4::jsonb,"
        f" version = version + 1, updated_at = now() WHERE id = $1 RETURNING {COLLECTION_COLUMNS}",
        access.id,
        changed.name,
        changed.description,
        None if changed.item_schema is None else orjson.dumps(changed.item_schema).decode(),
    )
    assert row is not None
    updated = public_collection(row)
    await record_collection_event(
        conn,
        COLLECTION_UPDATED,
        CollectionUpdated(
            collection_id=updated.id,
            owner_id=updated.owner_id,
            name=updated.name,
            version=updated.version,
            schema_changed=schema_changed,
        ),
        updated.id,
        request_id=request_id,
        actor=caller_uuid(caller),
    )
    return updated


async def delete_collection(
    conn: asyncpg.Connection,
    caller: DataCaller,
    collection_id: str,
    *,
    if_match: IfMatch,
    request_id: str | None = None,
) -> None:
    """Delete the collection, its items and its members (owner only); one ``collection.deleted`` with the count."""
    access = await collection_access(conn, caller, collection_id, lock="update")
    access.require_owner("delete it")
    check_if_match(if_match, access.version)
    await delete_locked_collection(
        conn, access.collection, reason="deleted", request_id=request_id, actor=caller_uuid(caller)
    )


async def delete_locked_collection(
    conn: asyncpg.Connection, collection: Collection, *, reason: str, request_id: str | None, actor: str | None
) -> None:
    """Delete a collection whose row this transaction holds; record ``collection.deleted`` (items and members
    cascade without events of their own)."""
    items = await conn.fetchval("SELECT count(*) FROM data.items WHERE collection_id = $1", collection.id)
    await conn.execute("DELETE FROM data.collections WHERE id = $1", collection.id)
    await record_collection_event(
        conn,
        COLLECTION_DELETED,
        CollectionDeleted.model_validate(
            {
                "collection_id": collection.id,
                "owner_id": collection.owner_id,
                "version": collection.version,
                "items": int(items),
                "reason": reason,
            }
        ),
        collection.id,
        request_id=request_id,
        actor=actor,
    )
