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


async def create_item_then_fail(conn: Any, owner_id: str) -> None:
    """Store an item (and so its outbox row), then fail: both must roll back."""
    from strata.serve_apps.data._items import create_item

    await create_item(conn, owner_id, "note", {"lost": True})
    raise Boom("failed after the item and its event were written")


async def child_of_parent(conn: Any, event: Any) -> None:
    """A consumer effect that needs its parent row to exist first (a foreign key): poison until it does."""
    await conn.execute("INSERT INTO audit.t_child (event_id, item_id) VALUES ($1, $2)", event.id, event.data["item_id"])
