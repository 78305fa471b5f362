"""Managing users: edit a profile, list and read users, change roles, disable, delete.

Units of work over an asyncpg connection inside a transaction
(``Database.run_in_transaction``): every change records its event on topic
``strata.users.user.v1`` in the same transaction, keyed by the user id, with
the request id (``requestid``) and who made the change (``actor``: the user
themself for a profile edit, the administrator otherwise). The auth service
learns role changes, disabling and deletion from these events (consumer group
``auth``), never from a call.

Errors a client caused are :class:`~strata.schemas.DomainError` subclasses::

    update_profile  UserNotFound (the user id is not a UUID)
    list_users      Unprocessable (malformed cursor, limit out of 1..200)
    get_user        UserNotFound (no such profile)
    set_roles       Unprocessable (no role, or unknown roles: ``extra["unknown"]`` lists them),
                    UserNotFound (no such profile)
    disable         UserNotFound (no such profile)
    delete_user     UserNotFound (no such profile)

(:class:`~strata.schemas.UserNotFound` is a :class:`~strata.schemas.ResourceNotFound`: a 404 at the gateway.)
"""

from __future__ import annotations

import uuid

import asyncpg

from strata.actors.outbox import record_event
from strata.schemas import DeletedUser, Profile, Unprocessable, UserNotFound, UserPage
from strata.schemas.events import (
    USER_DELETED,
    USER_DISABLED,
    USER_ROLES_CHANGED,
    USER_UPDATED,
    EventType,
    UserDeleted,
    UserDisabled,
    UserRolesChanged,
    UserUpdated,
    new_event,
)
from strata.serve_apps._pagination import check_page_limit, decode_cursor, next_page_cursor
from strata.serve_apps.users._profiles import PROFILE_COLUMNS, get_or_create_profile, public_profile


def user_uuid(user_id: str) -> str:
    """``user_id`` as a canonical UUID string; :class:`UserNotFound` when it is not one (no such user)."""
    try:
        return str(uuid.UUID(user_id))
    except (ValueError, TypeError, AttributeError):
        raise UserNotFound("no such user") from None


# --- reads ----------------------------------------------------------------------------------------------------------


async def list_users(
    conn: asyncpg.Connection,
    *,
    cursor: str | None = None,
    limit: int = 50,
    role: str | None = None,
    email_prefix: str | None = None,
) -> UserPage:
    """One page of profiles, oldest first, and the cursor of the next page.

    Keyset pages on ``(created_at, user_id)`` (:mod:`strata.serve_apps._pagination`): a profile
    created while an admin pages through is neither repeated nor skipped among those already
    listed. ``role`` keeps users holding that role; ``email_prefix`` those
    whose email starts with it (emails are stored lower-cased; so is the
    prefix). ``next_cursor`` is ``None`` on the last page.
    """
    check_page_limit(limit)
    after = decode_cursor(cursor) if cursor else None
    rows = await conn.fetch(
        f"SELECT {PROFILE_COLUMNS} FROM users.profiles"
        " WHERE ($1::text IS NULL OR $1 = ANY (roles))"
        " AND ($2::text IS NULL OR starts_with(email, $2))"
        " AND ($3::timestamptz IS NULL OR (created_at, user_id) > ($3, $4::uuid))"
        " ORDER BY created_at, user_id LIMIT $5",
        role,
        None if email_prefix is None else email_prefix.strip().lower(),
        after.moment if after else None,
        after.id if after else None,
        limit + 1,
    )
    items = [public_profile(row) for row in rows[:limit]]
    return UserPage(items=items, next_cursor=next_page_cursor(rows, limit, moment="created_at", row_id="user_id"))


async def get_user(conn: asyncpg.Connection, user_id: str) -> Profile:
    """The profile of ``user_id``; :class:`UserNotFound` when there is none (an admin read creates nothing)."""
    row = await conn.fetchrow(f"SELECT {PROFILE_COLUMNS} FROM users.profiles WHERE user_id = $1", user_uuid(user_id))
    if row is None:
        raise UserNotFound("no such user")
    return public_profile(row)


# --- changes --------------------------------------------------------------------------------------------------------


async def update_profile(
    conn: asyncpg.Connection, user_id: str, display_name: str | None, *, request_id: str | None = None
) -> Profile:
    """Set the display name (``None`` clears it) of ``user_id``'s profile, created first if missing.

    The user edits their own profile, so it may not exist yet (see
    :func:`~strata.serve_apps.users._profiles.get_or_create_profile`).
    Records ``updated`` (actor: the user).
    """
    user_id = user_uuid(user_id)
    await get_or_create_profile(conn, user_id)
    row = await conn.fetchrow(
        "UPDATE users.profiles SET display_name = $2, version = version + 1, updated_at = now()"
        f" WHERE user_id = $1 RETURNING {PROFILE_COLUMNS}",
        user_id,
        display_name,
    )
    assert row is not None  # created above, in this transaction
    await _record(conn, USER_UPDATED, UserUpdated(user_id=user_id, display_name=display_name), request_id, user_id)
    return public_profile(row)


async def set_roles(
    conn: asyncpg.Connection,
    user_id: str,
    roles: list[str],
    *,
    request_id: str | None = None,
    actor: str | None = None,
) -> Profile:
    """Replace the roles of ``user_id`` (stored sorted, without duplicates); return the profile.

    Every role must exist in ``users.roles`` and there must be at least one.
    A change bumps ``perm_version`` and records ``roles_changed`` with the new
    roles and version; the same roles again change nothing and record nothing.
    """
    wanted = sorted(set(roles))
    if not wanted:
        raise Unprocessable("a user needs at least one role", code="no-roles")
    known = {r["name"] for r in await conn.fetch("SELECT name FROM users.roles WHERE name = ANY ($1::text[])", wanted)}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise Unprocessable(f"unknown role(s): {', '.join(unknown)}", code="unknown-role", unknown=unknown)
    user_id = user_uuid(user_id)
    current = await conn.fetchrow("SELECT roles FROM users.profiles WHERE user_id = $1 FOR UPDATE", user_id)
    if current is None:
        raise UserNotFound("no such user")
    if sorted(current["roles"]) == wanted:
        return await get_user(conn, user_id)
    row = await conn.fetchrow(
        "UPDATE users.profiles SET roles = $2, perm_version = perm_version + 1, version = version + 1,"
        f" updated_at = now() WHERE user_id = $1 RETURNING {PROFILE_COLUMNS}",
        user_id,
        wanted,
    )
    assert row is not None  # locked above
    payload = UserRolesChanged(user_id=user_id, roles=wanted, perm_version=row["perm_version"])
    await _record(conn, USER_ROLES_CHANGED, payload, request_id, actor)
    return public_profile(row)


async def disable(
    conn: asyncpg.Connection, user_id: str, *, request_id: str | None = None, actor: str | None = None
) -> Profile:
    """Disable ``user_id``; return the profile. Idempotent: ``disabled`` is recorded only when it changes."""
    user_id = user_uuid(user_id)
    row = await conn.fetchrow(
        "UPDATE users.profiles SET disabled = true, version = version + 1, updated_at = now()"
        f" WHERE user_id = $1 AND NOT disabled RETURNING {PROFILE_COLUMNS}",
        user_id,
    )
    if row is None:
        return await get_user(conn, user_id)  # already disabled, or UserNotFound
    await _record(conn, USER_DISABLED, UserDisabled(user_id=user_id), request_id, actor)
    return public_profile(row)


async def delete_user(
    conn: asyncpg.Connection, user_id: str, *, request_id: str | None = None, actor: str | None = None
) -> DeletedUser:
    """Delete the profile of ``user_id``. Records ``deleted``; the auth service deletes the account on that event."""
    user_id = user_uuid(user_id)
    deleted = await conn.fetchval("DELETE FROM users.profiles WHERE user_id = $1 RETURNING user_id::text", user_id)
    if deleted is None:
        raise UserNotFound("no such user")
    await _record(conn, USER_DELETED, UserDeleted(user_id=user_id), request_id, actor)
    return DeletedUser(user_id=user_id)


async def _record(
    conn: asyncpg.Connection,
    event: EventType,
    payload: UserUpdated | UserRolesChanged | UserDisabled | UserDeleted,
    request_id: str | None,
    actor: str | None,
) -> None:
    user_id = payload.user_id
    await record_event(
        conn,
        new_event(event, payload, subject=f"user/{user_id}", key=user_id, request_id=request_id, actor=actor),
    )
