"""Importable units of work for the database tests (the actor backend ships them by value)."""

from __future__ import annotations

from typing import Any


class Boom(RuntimeError):
    """Raised inside a unit of work after its insert, to prove the insert rolls back."""


async def insert_then_fail(conn: Any, table: str, value: str) -> None:
    await conn.execute(f"INSERT INTO data.{table} (value) VALUES ($1)", value)
    raise Boom(f"failed after inserting {value}")


async def insert_two(conn: Any, table: str, first: str, second: str) -> int:
    await conn.execute(f"INSERT INTO data.{table} (value) VALUES ($1)", first)
    await conn.execute(f"INSERT INTO data.{table} (value) VALUES ($1)", second)
    return int(await conn.fetchval(f"SELECT count(*) FROM data.{table}"))


async def insert_labelled(conn: Any, table: str, *, value: str, label: str = "") -> str:
    """Insert ``label + value``, taken by keyword only; the value as stored."""
    stored = await conn.fetchval(f"INSERT INTO data.{table} (value) VALUES ($1) RETURNING value", label + value)
    return str(stored)


async def create_collection_and_item_then_fail(conn: Any, owner_id: str, limits: Any) -> None:
    """Store a collection and an item in it (and so their outbox rows), then fail: all four must roll back.

    The :class:`Boom` carries the ids written, so the test can look for exactly those rows and events.
    """
    from strata.schemas import CollectionCreate, DataCaller, ItemCreate
    from strata.serve_apps.data._collections import create_collection
    from strata.serve_apps.data._items import create_item

    caller = DataCaller(user_id=owner_id)
    collection = (await create_collection(conn, caller, CollectionCreate(name="lost"), limits=limits)).collection
    created = await create_item(
        conn, caller, collection.id, ItemCreate(title="lost", attributes={"lost": True}), limits=limits
    )
    raise Boom("failed after the collection, its item and their events were written", collection.id, created.item.id)


async def child_of_parent(conn: Any, event: Any) -> None:
    """A consumer effect that needs its parent row to exist first (a foreign key): poison until it does."""
    await conn.execute("INSERT INTO audit.t_child (event_id, item_id) VALUES ($1, $2)", event.id, event.data["item_id"])
