"""Managing users: edit a profile, list and read users, change roles, disable, enable, delete.

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
                    UserNotFound (no such profile), Conflict (``code`` ``last-admin``: it would demote the last admin)
    disable         UserNotFound (no such profile), Conflict (``last-admin``: it would disable the last admin)
    enable          UserNotFound (no such profile)
    delete_user     UserNotFound (no such profile), Conflict (``last-admin``: it would delete the last admin)

The last admin: a change that would leave no enabled user with the ``admin``
role is refused (:class:`~strata.schemas.Conflict` with ``code`` ``last-admin``,
a 409), or nobody could administer users again short of ``strata users
create-admin``. Such changes first lock the
``admin`` row of ``users.roles`` (:func:`_lock_admins`), so two of them never
count the admins at once: two concurrent demotions of the last two admins end
with one refused, not with none left.

(:class:`~strata.schemas.UserNotFound` is a :class:`~strata.schemas.ResourceNotFound`: a 404 at the gateway.)
"""

from __future__ import annotations

import uuid

import asyncpg

from strata.actors.outbox import record_event
from strata.schemas import Conflict, DeletedUser, Profile, Unprocessable, UserNotFound, UserPage
from strata.schemas.events import (
    USER_DELETED,
    USER_DISABLED,
    USER_ENABLED,
    USER_ROLES_CHANGED,
    USER_UPDATED,
    EventType,
    UserDeleted,
    UserDisabled,
    UserEnabled,
    UserRolesChanged,
    UserUpdated,
    new_event,
)
from strata.serve_apps._pagination import check_page_limit, decode_cursor, next_page_cursor
from strata.serve_apps.users._profiles import PROFILE_COLUMNS, get_or_create_profile, public_profile

ADMIN_ROLE = "admin"


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
    if ADMIN_ROLE not in wanted:
        await _lock_admins(conn)
    current = await conn.fetchrow("SELECT roles, disabled FROM users.profiles WHERE user_id = $1 FOR UPDATE", user_id)
    if current is None:
        raise UserNotFound("no such user")
    if sorted(current["roles"]) == wanted:
        return await get_user(conn, user_id)
    if ADMIN_ROLE in current["roles"] and ADMIN_ROLE not in wanted and not current["disabled"]:
        await _refuse_last_admin(conn, user_id, "demote")
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
    await _lock_admins(conn)
    current = await conn.fetchrow("SELECT roles, disabled FROM users.profiles WHERE user_id = $1 FOR UPDATE", user_id)
    if current is not None and ADMIN_ROLE in current["roles"] and not current["disabled"]:
        await _refuse_last_admin(conn, user_id, "disable")
    row = await conn.fetchrow(
        "UPDATE users.profiles SET disabled = true, version = version + 1, updated_at = now()"
        f" WHERE user_id = $1 AND NOT disabled RETURNING {PROFILE_COLUMNS}",
        user_id,
    )
    if row is None:
        return await get_user(conn, user_id)  # already disabled, or UserNotFound
    await _record(conn, USER_DISABLED, UserDisabled(user_id=user_id), request_id, actor)
    return public_profile(row)


async def enable(
    conn: asyncpg.Connection, user_id: str, *, request_id: str | None = None, actor: str | None = None
) -> Profile:
    """Enable ``user_id`` again; return the profile. Idempotent: ``enabled`` is recorded only when it changes.

    The auth service lets the account log in again on that event. Tokens issued before the user was disabled
    stay refused (their sessions were ended): the user logs in afresh.
    """
    user_id = user_uuid(user_id)
    row = await conn.fetchrow(
        "UPDATE users.profiles SET disabled = false, version = version + 1, updated_at = now()"
        f" WHERE user_id = $1 AND disabled RETURNING {PROFILE_COLUMNS}",
        user_id,
    )
    if row is None:
        return await get_user(conn, user_id)  # not disabled, or UserNotFound
    await _record(conn, USER_ENABLED, UserEnabled(user_id=user_id), request_id, actor)
    return public_profile(row)


async def delete_user(
    conn: asyncpg.Connection, user_id: str, *, request_id: str | None = None, actor: str | None = None
) -> DeletedUser:
    """Delete the profile of ``user_id``. Records ``deleted``; the auth service deletes the account on that event."""
    user_id = user_uuid(user_id)
    await _lock_admins(conn)
    current = await conn.fetchrow("SELECT roles, disabled FROM users.profiles WHERE user_id = $1 FOR UPDATE", user_id)
    if current is not None and ADMIN_ROLE in current["roles"] and not current["disabled"]:
        await _refuse_last_admin(conn, user_id, "delete")
    deleted = await conn.fetchval("DELETE FROM users.profiles WHERE user_id = $1 RETURNING user_id::text", user_id)
    if deleted is None:
        raise UserNotFound("no such user")
    await _record(conn, USER_DELETED, UserDeleted(user_id=user_id), request_id, actor)
    return DeletedUser(user_id=user_id)


async def _lock_admins(conn: asyncpg.Connection) -> None:
    """Serialize the changes that may remove an admin: each holds the ``admin`` role's row until it commits.

    Under READ COMMITTED each statement sees what committed before it began, so the count in
    :func:`_refuse_last_admin`, run after this lock is held, includes the change of whoever held it before.
    ``FOR NO KEY UPDATE`` leaves ``role_permissions``' foreign key checks (``FOR KEY SHARE``) unblocked.
    """
    await conn.execute("SELECT 1 FROM users.roles WHERE name = $1 FOR NO KEY UPDATE", ADMIN_ROLE)


async def _refuse_last_admin(conn: asyncpg.Connection, user_id: str, change: str) -> None:
    """:class:`Conflict` (``last-admin``) unless an enabled admin other than ``user_id`` remains.

    The caller holds :func:`_lock_admins`."""
    others = await conn.fetchval(
        "SELECT count(*) FROM users.profiles WHERE $1 = ANY (roles) AND NOT disabled AND user_id <> $2",
        ADMIN_ROLE,
        user_id,
    )
    if not others:
        raise Conflict(
            f"cannot {change} the last enabled administrator: make another user an admin first", code="last-admin"
        )


async def _record(
    conn: asyncpg.Connection,
    event: EventType,
    payload: UserUpdated | UserRolesChanged | UserDisabled | UserEnabled | UserDeleted,
    request_id: str | None,
    actor: str | None,
) -> None:
    user_id = payload.user_id
    await record_event(
        conn,
        new_event(event, payload, subject=f"user/{user_id}", key=user_id, request_id=request_id, actor=actor),
    )
