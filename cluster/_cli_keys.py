"""`strata keys ...`: the keys that sign access tokens (rotate them, list them)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import typer

from strata.actors.postgres import map_asyncpg_errors, service_dsn
from strata.cluster import _lifecycle
from strata.cluster._state import State
from strata.schemas import Settings

T = TypeVar("T")

keys_app = typer.Typer(help="Keys that sign access tokens: rotate them, list them.", no_args_is_help=True)


def _settings() -> Settings:
    settings = Settings()
    return _lifecycle.resolve(settings, State.load(settings.data_dir.resolve()), create=False).settings


async def _as_auth(settings: Settings, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction on a connection of the auth service's own role."""
    with map_asyncpg_errors():
        conn = await asyncpg.connect(
            service_dsn(settings, "auth"),
            server_settings={"application_name": "strata-cli-keys", "search_path": "auth"},
            timeout=settings.db_command_timeout_s,
        )
        try:
            async with conn.transaction():
                return await work(conn)
        finally:
            await conn.close()


@keys_app.command("rotate")
def rotate() -> None:
    """Make a new active signing key. The previous one stays in the JWKS, so tokens it signed verify until they
    expire; every auth replica signs with the new key within 30 seconds."""
    from strata.serve_apps.auth import KEY_CACHE_TTL_S, rotate_key

    settings = _settings()
    assert settings.secret_key is not None  # resolve() fills it in
    secret = settings.secret_key.get_secret_value()

    async def work(conn: asyncpg.Connection) -> str:
        return await rotate_key(conn, secret, settings.token_algorithm)

    kid = asyncio.run(_as_auth(settings, work))
    typer.echo(kid)
    typer.echo(
        f"new active signing key {kid} ({settings.token_algorithm}); auth replicas sign with it within"
        f" {KEY_CACHE_TTL_S:.0f}s, the previous key stays in the JWKS",
        err=True,
    )


@keys_app.command("list")
def list_keys() -> None:
    """Show the stored signing keys (no key material): kid, algorithm, when activated and retired."""
    from strata.serve_apps.auth import key_inventory

    settings = _settings()
    keys: list[dict[str, Any]] = asyncio.run(_as_auth(settings, key_inventory))
    if not keys:
        typer.echo("no signing key yet (the auth service makes one when it starts)")
        return
    published = 0
    for key in keys:
        if key["retired_at"] is None:
            state = "active"
            published += 1
        elif published < 2:
            state = "previous (in the JWKS)"
            published += 1
        else:
            state = "retired"
        retired = "" if key["retired_at"] is None else f"  retired {key['retired_at'].isoformat()}"
        typer.echo(f"{key['kid']}  {key['alg']}  {state}  activated {key['activated_at'].isoformat()}{retired}")
