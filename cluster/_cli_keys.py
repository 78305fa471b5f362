"""`strata keys ...`: the keys that sign access tokens (rotate them, list them), through the auth service's client."""

from __future__ import annotations

import typer

from strata.cluster._cli_services import with_services
from strata.schemas import KeyRotation, SigningKeys

keys_app = typer.Typer(help="Keys that sign access tokens: rotate them, list them.", no_args_is_help=True)


@keys_app.command("rotate")
def rotate() -> None:
    """Make a new active signing key. The previous one stays in the JWKS, so tokens it signed verify until they
    expire; every auth replica signs with the new key within 30 seconds."""
    from strata.contracts import AuthClient
    from strata.serve_apps.auth import KEY_CACHE_TTL_S

    async def work() -> KeyRotation:
        return await AuthClient().rotate_keys()

    rotation = with_services(work)
    typer.echo(rotation.kid)
    typer.echo(
        f"new active signing key {rotation.kid} (previous {rotation.previous_kid or 'none'}); auth replicas sign with"
        f" it within {KEY_CACHE_TTL_S:.0f}s, the previous key stays in the JWKS",
        err=True,
    )


@keys_app.command("list")
def list_keys() -> None:
    """Show the stored signing keys (no key material): kid, algorithm, when activated and retired."""
    from strata.contracts import AuthClient

    async def work() -> SigningKeys:
        return await AuthClient().signing_keys()

    keys = with_services(work).keys
    if not keys:
        typer.echo("no signing key yet (the auth service makes one when it starts)")
        return
    published = 0
    for key in keys:
        if key.retired_at is None:
            state = "active"
            published += 1
        elif published < 2:
            state = "previous (in the JWKS)"
            published += 1
        else:
            state = "retired"
        retired = "" if key.retired_at is None else f"  retired {key.retired_at.isoformat()}"
        typer.echo(f"{key.kid}  {key.alg}  {state}  activated {key.activated_at.isoformat()}{retired}")
