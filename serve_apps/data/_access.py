"""Who may do what to a collection, decided by the data service itself in the unit of work that acts.

=========  ==============================  ======================  ================
role       collection                      members                 items
=========  ==============================  ======================  ================
owner      read, update, delete            read, put, remove       read, write
editor     read                            read (and leave)        read, write
viewer     read                            read (and leave)        read
admin      read (``data:admin``)           read                    read
stranger   404 for everything: never learns the collection exists
=========  ==============================  ======================  ================

Someone who sees the collection but whose role does not allow a change gets :class:`~strata.schemas.Forbidden`.
An admin who owns or edits a collection has that role there (admin only adds reading).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg
import orjson
from pydantic import JsonValue

from strata.schemas import AccessRole, Collection, CollectionNotFound, DataCaller, Forbidden

COLLECTION_COLUMNS = (
    "c.id::text AS id, c.owner_id::text AS owner_id, c.name, c.description, c.item_schema::text AS item_schema,"
    " c.version, c.created_at, c.updated_at"
)
ROLE = "CASE WHEN c.owner_id = $2::uuid THEN 'owner' ELSE m.role END AS role"

Lock = Literal["share", "update"] | None


@dataclass(frozen=True, slots=True)
class CollectionAccess:
    """A collection as the caller reaches it: the row and the caller's role in it."""

    collection: Collection
    role: AccessRole
    version: int
    item_schema: dict[str, JsonValue] | None

    @property
    def id(self) -> str:
        return self.collection.id

    def require_owner(self, action: str) -> None:
        if self.role != "owner":
            raise Forbidden(f"only the collection's owner may {action}")

    def require_writer(self, action: str) -> None:
        if self.role not in ("owner", "editor"):
            raise Forbidden(f"only the collection's owner or an editor may {action}")


def caller_uuid(caller: DataCaller) -> str:
    """The caller's id as a canonical UUID (a caller that is no user may do nothing)."""
    try:
        return str(uuid.UUID(caller.user_id))
    except (ValueError, TypeError, AttributeError):
        raise Forbidden("the caller is not a user") from None


def collection_uuid(collection_id: str) -> str:
    """``collection_id`` as a canonical UUID; :class:`CollectionNotFound` when it is none (it names no collection)."""
    try:
        return str(uuid.UUID(collection_id))
    except (ValueError, TypeError, AttributeError):
        raise CollectionNotFound("no such collection") from None


def public_collection(row: asyncpg.Record | dict[str, object]) -> Collection:
    schema = row["item_schema"]
    created, updated = row["created_at"], row["updated_at"]
    assert isinstance(created, datetime) and isinstance(updated, datetime)
    return Collection(
        id=str(row["id"]),
        owner_id=str(row["owner_id"]),
        name=str(row["name"]),
        description=str(row["description"]),
        item_schema=None if schema is None else orjson.loads(str(schema)),
        version=int(str(row["version"])),
        created_at=created.isoformat(),
        updated_at=updated.isoformat(),
    )


def access_role(row_role: str | None, caller: DataCaller) -> AccessRole | None:
    if row_role in ("owner", "editor", "viewer"):
        return row_role  # type: ignore[return-value]
    return "admin" if caller.admin else None


async def collection_access(
    conn: asyncpg.Connection, caller: DataCaller, collection_id: str, *, lock: Lock = None
) -> CollectionAccess:
    """The collection and the caller's role, in one query; :class:`CollectionNotFound` when they may not see it.

    ``lock`` ``share`` keeps the collection (and its schema) as read until the transaction ends (item and member
    writes); ``update`` is for changing or deleting the collection itself.
    """
    suffix = {None: "", "share": " FOR SHARE OF c", "update": " FOR UPDATE OF c"}[lock]
    row = await conn.fetchrow(
        f"SELECT {COLLECTION_COLUMNS}, {ROLE} FROM data.collections c"
        " LEFT JOIN data.members m ON m.collection_id = c.id AND m.user_id = $2::uuid"
        f" WHERE c.id = $1::uuid{suffix}",
        collection_uuid(collection_id),
        caller_uuid(caller),
    )
    role = None if row is None else access_role(row["role"], caller)
    if row is None or role is None:
        raise CollectionNotFound("no such collection")
    collection = public_collection(row)
    return CollectionAccess(collection, role, collection.version, collection.item_schema)
