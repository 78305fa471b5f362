"""Seeding the catalogue of permissions from the registry.

Each component's spec lists the permissions its routes require (``ServiceSpec.permissions``); the catalogue lives in
the schema of the component owning roles (``PERMISSIONS_OWNER``, the users service: its ``0006_permissions.sql``), and
``strata migrate`` upserts it once every schema is migrated. A permission that leaves the registry stays in the
catalogue: grants may still name it, and taking it away is a decision for a migration of the owner.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from strata.actors.postgres._errors import map_asyncpg_errors
from strata.actors.postgres._roles import check_service_name, service_role
from strata.schemas import PermissionSpec, ServiceSpec

_UPSERT = (
    "INSERT INTO permissions (name, component, description)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::text[])"
    " ON CONFLICT (name) DO UPDATE SET component = EXCLUDED.component, description = EXCLUDED.description"
    " WHERE (permissions.component, permissions.description)"
    " IS DISTINCT FROM (EXCLUDED.component, EXCLUDED.description)"
    " RETURNING name"
)


async def seed_permissions(
    conn: asyncpg.Connection, owner: str, permissions: Sequence[tuple[ServiceSpec, PermissionSpec]]
) -> list[str]:
    """Upsert ``permissions`` into the catalogue of ``owner``'s schema; return the names added or changed.

    Runs on an admin connection, in one transaction as ``owner``'s role in its schema (like its migrations), after
    ``owner``'s migrations made the table. Seeding again changes nothing. Two components defining one permission is a
    ``ValueError``: its description and component would depend on the order.
    """
    seen: dict[str, str] = {}
    for spec, permission in permissions:
        if permission.name in seen:
            raise ValueError(f"permission {permission.name!r} is defined by {seen[permission.name]} and {spec.name}")
        seen[permission.name] = spec.name
    role = service_role(check_service_name(owner))
    with map_asyncpg_errors():
        async with conn.transaction():
            await conn.execute(await conn.fetchval("SELECT format('SET LOCAL ROLE %I', $1::text)", role))
            await conn.execute(await conn.fetchval("SELECT format('SET LOCAL search_path TO %I', $1::text)", owner))
            rows = await conn.fetch(
                _UPSERT,
                [permission.name for _, permission in permissions],
                [spec.name for spec, _ in permissions],
                [permission.description for _, permission in permissions],
            )
    return sorted(row["name"] for row in rows)
