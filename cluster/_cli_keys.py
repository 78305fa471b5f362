"""`strata keys ...`: the keys that sign access tokens (rotate them, list them)."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import asyncpg
import typer

from strata.cluster._cli_db import as_service, resolved_settings

T = TypeVar("T")

keys_app = typer.Typer(help="Keys that sign access tokens: rotate them, list them.", no_args_is_help=True)


@keys_app.command("rotate")
def rotate() -> None:
    """Make a new active signing key. The previous one stays in the JWKS, so tokens it signed verify until they
    expire; every auth replica signs with the new key within 30 seconds."""
    from strata.serve_apps.auth import KEY_CACHE_TTL_S, rotate_key

    settings = resolved_settings()
    assert settings.secret_key is not None  # resolve() fills it in
    secret = settings.secret_key.get_secret_value()

    async def work(conn: asyncpg.Connection) -> str:
        return await rotate_key(conn, secret, settings.token_algorithm)

    kid = asyncio.run(as_service(settings, "auth", work, command="keys"))
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

    settings = resolved_settings()
    keys: list[dict[str, Any]] = asyncio.run(as_service(settings, "auth", key_inventory, command="keys"))
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
