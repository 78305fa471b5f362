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
