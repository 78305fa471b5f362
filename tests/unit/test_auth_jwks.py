"""The JWKS keeps every retired key whose tokens may still be live, on a real PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg

from strata.actors.postgres import Database
from strata.serve_apps.auth._keys import ensure_active_key, jwks, rotate_key
from tests.unit.conftest import UnitPostgres


async def _kids(database: Database, window_s: float) -> list[str]:
    document: dict[str, Any] = await database.run_in_transaction(jwks, retired_within_s=window_s)
    return [key["kid"] for key in document["keys"]]


async def test_two_rotations_in_a_row_keep_both_retired_keys_in_the_jwks(
    auth_database: Database, unit_postgres: UnitPostgres
) -> None:
    secret = unit_postgres.secret_key
    await auth_database.execute("DELETE FROM auth.signing_keys")
    first = await auth_database.run_in_transaction(ensure_active_key, secret)
    second = await auth_database.run_in_transaction(rotate_key, secret)
    third = await auth_database.run_in_transaction(rotate_key, secret)

    # Within the window, a replica may still sign with `first` (its cache is 30 s old): it stays published.
    assert await _kids(auth_database, 360.0) == [third, second, first]
    # Without a window, only the active key and the one retired last.
    assert await _kids(auth_database, 0.0) == [third, second]

    conn = await asyncpg.connect(unit_postgres.admin_dsn)
    try:  # long retired: its tokens have all expired
        for kid, age in ((first, timedelta(hours=2)), (second, timedelta(hours=1))):
            await conn.execute(
                "UPDATE auth.signing_keys SET retired_at = now() - $2::interval WHERE kid = $1", kid, age
            )
    finally:
        await conn.close()
    assert await _kids(auth_database, 360.0) == [third, second]  # the last retired one always stays
