"""Data items: store, change and delete a JSON document; every change records its event in the outbox.

Plain async functions over an asyncpg connection inside a unit of work
(``Database.run_in_transaction``), so the change and its event commit together.
They answer :class:`~strata.schemas.Item`; an id that names no item (or is no
UUID) is :class:`~strata.schemas.ItemNotFound`, a 404 at the gateway.
"""

from __future__ import annotations

import uuid

import asyncpg
import orjson
from pydantic import JsonValue

from strata.actors.outbox import record_event
from strata.schemas import Item, ItemNotFound
from strata.schemas.events import (
    ITEM_CREATED,
    ITEM_DELETED,
    ITEM_UPDATED,
    ItemCreated,
    ItemDeleted,
    ItemUpdated,
    new_event,
)

_COLUMNS = "id::text AS id, owner_id, kind, body::text AS body, version, created_at, updated_at"


def _public(row: asyncpg.Record) -> Item:
    item = dict(row)
    item["body"] = orjson.loads(item["body"])
    item["created_at"] = item["created_at"].isoformat()
    item["updated_at"] = item["updated_at"].isoformat()
    return Item.model_validate(item)


def item_uuid(item_id: str) -> str:
    """``item_id`` as a canonical UUID string; :class:`ItemNotFound` when it is not one (no such item)."""
    try:
        return str(uuid.UUID(item_id))
    except (ValueError, TypeError, AttributeError):
        raise ItemNotFound("no such item") from None  # not its text: a caller's input is never echoed back


async def create_item(
    conn: asyncpg.Connection, owner_id: str, kind: str, body: JsonValue, *, request_id: str | None = None
) -> Item:
    """Store a new item owned by ``owner_id``; records ``strata.data.item.created.v1``."""
    item_id = str(uuid.uuid4())
    row = await conn.fetchrow(
        f"INSERT INTO data.items (id, owner_id, kind, body) VALUES ($1, $2, $3, $4::jsonb) RETURNING {_COLUMNS}",
        item_id,
        owner_id,
        kind,
        orjson.dumps(body).decode(),
    )
    assert row is not None
    payload = ItemCreated(item_id=item_id, owner_id=owner_id, kind=kind, version=1)
    await record_event(
        conn,
        new_event(ITEM_CREATED, payload, subject=f"item/{item_id}", key=item_id, request_id=request_id, actor=owner_id),
    )
    return _public(row)


async def update_item(
    conn: asyncpg.Connection, item_id: str, body: JsonValue, *, request_id: str | None = None
) -> Item:
    """Replace an item's body (its version goes up by one); records ``strata.data.item.updated.v1``."""
    item_id = item_uuid(item_id)
    row = await conn.fetchrow(
        "UPDATE data.items SET body = $2::jsonb, version = version + 1, updated_at = now()"
        f" WHERE id = $1 RETURNING {_COLUMNS}",
        item_id,
        orjson.dumps(body).decode(),
    )
    if row is None:
        raise ItemNotFound(f"no item {item_id}")
    payload = ItemUpdated(item_id=item_id, owner_id=row["owner_id"], kind=row["kind"], version=row["version"])
    await record_event(
        conn,
        new_event(
            ITEM_UPDATED, payload, subject=f"item/{item_id}", key=item_id, request_id=request_id, actor=row["owner_id"]
        ),
    )
    return _public(row)


async def delete_item(conn: asyncpg.Connection, item_id: str, *, request_id: str | None = None) -> None:
    """Delete an item; records ``strata.data.item.deleted.v1``."""
    item_id = item_uuid(item_id)
    row = await conn.fetchrow("DELETE FROM data.items WHERE id = $1 RETURNING owner_id, version", item_id)
    if row is None:
        raise ItemNotFound(f"no item {item_id}")
    payload = ItemDeleted(item_id=item_id, owner_id=row["owner_id"], version=row["version"])
    await record_event(
        conn,
        new_event(
            ITEM_DELETED, payload, subject=f"item/{item_id}", key=item_id, request_id=request_id, actor=row["owner_id"]
        ),
    )


async def get_item(conn: asyncpg.Connection, item_id: str) -> Item:
    """The item ``item_id``."""
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM data.items WHERE id = $1", item_uuid(item_id))
    if row is None:
        raise ItemNotFound(f"no item {item_id}")
    return _public(row)
