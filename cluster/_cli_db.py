"""What the `strata keys` and `strata users` commands share: the running system's settings, and a unit of work run
as one service's own database role (never as the admin)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from strata.actors.postgres import map_asyncpg_errors, service_dsn
from strata.cluster._runtime import resolve
from strata.cluster._state import State
from strata.schemas import Settings

T = TypeVar("T")


def resolved_settings() -> Settings:
    """The settings with the running system's addresses and secrets filled in (nothing is created)."""
    settings = Settings()
    return resolve(settings, State.load(settings.data_dir.resolve()), create=False).settings


async def as_service(
    settings: Settings, service: str, work: Callable[[asyncpg.Connection], Awaitable[T]], *, command: str
) -> T:
    """Run ``work`` in one transaction on a connection of ``service``'s own role (``strata-cli-<command>``)."""
    with map_asyncpg_errors():
        conn = await asyncpg.connect(
            service_dsn(settings, service),
            server_settings={"application_name": f"strata-cli-{command}", "search_path": service},
            timeout=settings.db_command_timeout_s,
        )
        try:
            async with conn.transaction():
                return await work(conn)
        finally:
            await conn.close()
