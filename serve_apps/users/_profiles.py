"""Profiles and the role -> permission mapping, over the users schema.

A profile is created from the auth service's ``registered`` event (consumer
group ``users``). A token's subject may be read before that event arrives (the
two paths are asynchronous by design): :func:`get_or_create_profile` then
creates the profile idempotently with what it knows, and the event fills in the
email when it comes. No synchronous call between services either way.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from strata.schemas import Profile, RolePermissions
from strata.schemas.events import ACCOUNT_REGISTERED, CloudEvent

PROFILE_COLUMNS = (
    "user_id::text AS user_id, email, display_name, roles, disabled, perm_version, version, created_at, updated_at"
)


def public_profile(row: asyncpg.Record | dict[str, Any]) -> Profile:
    """A profile row (selected with ``PROFILE_COLUMNS``) as the :class:`~strata.schemas.Profile` callers get."""
    profile = dict(row)
    profile["roles"] = list(profile["roles"])
    profile["created_at"] = profile["created_at"].isoformat()
    profile["updated_at"] = profile["updated_at"].isoformat()
    return Profile.model_validate(profile)


async def apply_auth_event(conn: asyncpg.Connection, event: CloudEvent[Any]) -> None:
    """The users service's effect of auth events: a registration creates (or completes) the profile."""
    if event.type != ACCOUNT_REGISTERED.type:
        return
    await ensure_profile(conn, event.data["user_id"], event.data["email"])


async def ensure_profile(conn: asyncpg.Connection, user_id: str, email: str) -> None:
    """Create the profile of a registered account, or complete one created before its email was known."""
    await conn.execute(
        "INSERT INTO users.profiles (user_id, email) VALUES ($1, $2)"
        " ON CONFLICT (user_id) DO UPDATE SET email = EXCLUDED.email, updated_at = now()"
        " WHERE users.profiles.email IS NULL",
        user_id,
        email,
    )


SELECT_PROFILE = f"SELECT {PROFILE_COLUMNS} FROM users.profiles WHERE user_id = $1"


async def find_profile(conn: asyncpg.Connection, user_id: str) -> Profile | None:
    """The profile of ``user_id`` (a canonical UUID), if it exists."""
    row = await conn.fetchrow(SELECT_PROFILE, user_id)
    return None if row is None else public_profile(row)


async def get_or_create_profile(conn: asyncpg.Connection, user_id: str) -> Profile:
    """The profile of ``user_id`` (a canonical UUID), created empty first if it does not exist yet."""
    await conn.execute("INSERT INTO users.profiles (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING", user_id)
    row = await conn.fetchrow(SELECT_PROFILE, user_id)
    assert row is not None
    return public_profile(row)


async def role_permissions(conn: asyncpg.Connection) -> RolePermissions:
    """Every role with its permissions (sorted), as the gateway caches them."""
    rows = await conn.fetch(
        "SELECT r.name, coalesce(array_agg(p.permission ORDER BY p.permission)"
        " FILTER (WHERE p.permission IS NOT NULL), '{}') AS permissions"
        " FROM users.roles r LEFT JOIN users.role_permissions p ON p.role = r.name GROUP BY r.name"
    )
    return RolePermissions(roles={row["name"]: list(row["permissions"]) for row in rows})
