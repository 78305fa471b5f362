"""Data items: store, change and delete a JSON document; every change records its event in the outbox.

Plain async functions over an asyncpg connection inside a unit of work
(``Database.run_in_transaction``), so the change and its event commit together.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import orjson

from strata.actors.outbox import record_event
from strata.actors.postgres import NotFound
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


def _public(row: asyncpg.Record) -> dict[str, Any]:
    item = dict(row)
    item["body"] = orjson.loads(item["body"])
    item["created_at"] = item["created_at"].isoformat()
    item["updated_at"] = item["updated_at"].isoformat()
    return item


async def create_item(
    conn: asyncpg.Connection, owner_id: str, kind: str, body: Any, request_id: str | None = None
) -> dict[str, Any]:
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
    conn: asyncpg.Connection, item_id: str, body: Any, request_id: str | None = None
) -> dict[str, Any]:
    """Replace an item's body (its version goes up by one); records ``strata.data.item.updated.v1``."""
    row = await conn.fetchrow(
        "UPDATE data.items SET body = $2::jsonb, version = version + 1, updated_at = now()"
        f" WHERE id = $1 RETURNING {_COLUMNS}",
        item_id,
        orjson.dumps(body).decode(),
    )
    if row is None:
        raise NotFound(f"no item {item_id}")
    payload = ItemUpdated(item_id=item_id, owner_id=row["owner_id"], kind=row["kind"], version=row["version"])
    await record_event(
        conn,
        new_event(
            ITEM_UPDATED, payload, subject=f"item/{item_id}", key=item_id, request_id=request_id, actor=row["owner_id"]
        ),
    )
    return _public(row)


async def delete_item(conn: asyncpg.Connection, item_id: str, request_id: str | None = None) -> None:
    """Delete an item; records ``strata.data.item.deleted.v1``."""
    row = await conn.fetchrow("DELETE FROM data.items WHERE id = $1 RETURNING owner_id, version", item_id)
    if row is None:
        raise NotFound(f"no item {item_id}")
    payload = ItemDeleted(item_id=item_id, owner_id=row["owner_id"], version=row["version"])
    await record_event(
        conn,
        new_event(
            ITEM_DELETED, payload, subject=f"item/{item_id}", key=item_id, request_id=request_id, actor=row["owner_id"]
        ),
    )


async def get_item(conn: asyncpg.Connection, item_id: str) -> dict[str, Any]:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM data.items WHERE id = $1", item_id)
    if row is None:
        raise NotFound(f"no item {item_id}")
    return _public(row)
