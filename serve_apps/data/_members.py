"""Members of a collection: the owner shares it (``viewer`` or ``editor``), changes roles, removes; members leave.

Units of work inside a transaction; each change records one event (``member_added``, ``member_changed``,
``member_removed``) keyed by the collection id, subject ``collection/<cid>/member/<uid>``. The owner is never a
member of their own collection (putting or removing them is ``Unprocessable`` ``owner-not-member``). ``If-Match``
is optional here: given, it is compared with the member's version (on a member that does not exist yet it fails).
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from strata.schemas import (
    DataCaller,
    IfMatch,
    Member,
    MemberChange,
    MemberPage,
    MemberRole,
    PreconditionFailed,
    ResourceNotFound,
    Unprocessable,
)
from strata.schemas.events import (
    MEMBER_ADDED,
    MEMBER_CHANGED,
    MEMBER_REMOVED,
    MemberAdded,
    MemberChanged,
    MemberRemoved,
)
from strata.serve_apps.data._access import caller_uuid, collection_access
from strata.serve_apps.data._collections import record_collection_event
from strata.serve_apps.data._cursors import next_cursor, verify_cursor
from strata.serve_apps.data._limits import DataLimits, check_limit

MEMBER_COLUMNS = "collection_id::text AS collection_id, user_id::text AS user_id, role, version, created_at, updated_at"


class MemberNotFound(ResourceNotFound):
    """No such member of the collection (a 404)."""


def public_member(row: asyncpg.Record | dict[str, Any]) -> Member:
    return Member(
        collection_id=row["collection_id"],
        user_id=row["user_id"],
        role=row["role"],
        version=row["version"],
        created_at=row["created_at"].isoformat(),
        updated_at=row["updated_at"].isoformat(),
    )


def _member_uuid(user_id: str, *, missing: bool) -> str:
    try:
        return str(uuid.UUID(user_id))
    except (ValueError, TypeError, AttributeError):
        if missing:
            raise MemberNotFound("no such member") from None
        raise Unprocessable("a member's user id is a UUID", code="invalid-user-id") from None


def _subject(collection_id: str, user_id: str) -> str:
    return f"collection/{collection_id}/member/{user_id}"


async def put_member(
    conn: asyncpg.Connection,
    caller: DataCaller,
    collection_id: str,
    user_id: str,
    role: MemberRole,
    *,
    if_match: IfMatch | None = None,
    request_id: str | None = None,
) -> MemberChange:
    """Share the collection with ``user_id`` as ``role`` or change their role (owner only).

    Putting the role a member already has changes nothing (no new version, no event).
    """
    if role not in ("viewer", "editor"):
        raise Unprocessable("a member's role is viewer or editor", code="invalid-role")
    member = _member_uuid(user_id, missing=False)
    access = await collection_access(conn, caller, collection_id, lock="share")
    access.require_owner("share it")
    if member == access.collection.owner_id:
        raise Unprocessable("the owner is not a member of their own collection", code="owner-not-member")
    actor = caller_uuid(caller)
    if if_match is None:
        row = await conn.fetchrow(
            "INSERT INTO data.members (collection_id, user_id, role) VALUES ($1, $2, $3)"
            f" ON CONFLICT DO NOTHING RETURNING {MEMBER_COLUMNS}",
            access.id,
            member,
            role,
        )
        if row is not None:
            added = public_member(row)
            await record_collection_event(
                conn,
                MEMBER_ADDED,
                MemberAdded(collection_id=access.id, user_id=member, role=role),
                access.id,
                subject=_subject(access.id, member),
                request_id=request_id,
                actor=actor,
            )
            return MemberChange(member=added, created=True)
    current = await conn.fetchrow(
        f"SELECT {MEMBER_COLUMNS} FROM data.members WHERE collection_id = $1 AND user_id = $2 FOR UPDATE",
        access.id,
        member,
    )
    if current is None:  # If-Match names a version of a member that does not exist
        raise PreconditionFailed("the member does not exist")
    if if_match is not None and not if_match.matches(current["version"]):
        raise PreconditionFailed("the member changed since this version was read")
    if current["role"] == role:
        return MemberChange(member=public_member(current), created=False)
    row = await conn.fetchrow(
        "UPDATE data.members SET role = $3, version = version + 1, updated_at = now()"
        f" WHERE collection_id = $1 AND user_id = $2 RETURNING {MEMBER_COLUMNS}",
        access.id,
        member,
        role,
    )
    assert row is not None
    await record_collection_event(
        conn,
        MEMBER_CHANGED,
        MemberChanged(collection_id=access.id, user_id=member, role=role, previous_role=current["role"]),
        access.id,
        subject=_subject(access.id, member),
        request_id=request_id,
        actor=actor,
    )
    return MemberChange(member=public_member(row), created=False)


async def get_member(conn: asyncpg.Connection, caller: DataCaller, collection_id: str, user_id: str) -> Member:
    """One member (anyone who may read the collection)."""
    access = await collection_access(conn, caller, collection_id)
    row = await conn.fetchrow(
        f"SELECT {MEMBER_COLUMNS} FROM data.members WHERE collection_id = $1 AND user_id = $2",
        access.id,
        _member_uuid(user_id, missing=True),
    )
    if row is None:
        raise MemberNotFound("no such member")
    return public_member(row)


async def list_members(
    conn: asyncpg.Connection,
    caller: DataCaller,
    collection_id: str,
    *,
    limits: DataLimits,
    cursor: str | None = None,
    limit: int = 50,
) -> MemberPage:
    """The collection's members in the order they were added (keyset on (created_at, user_id))."""
    check_limit(limit, limits)
    access = await collection_access(conn, caller, collection_id)
    listing = {"listing": "members", "collection": access.id}
    after = verify_cursor(limits.cursor_key, listing, cursor) if cursor else None
    rows = await conn.fetch(
        f"SELECT {MEMBER_COLUMNS} FROM data.members WHERE collection_id = $1"
        " AND ($2::timestamptz IS NULL OR (created_at, user_id) > ($2, $3::uuid))"
        " ORDER BY created_at, user_id LIMIT $4",
        access.id,
        after.moment if after else None,
        after.id if after else None,
        limit + 1,
    )
    page_rows = [dict(r) for r in rows]
    return MemberPage(
        items=[public_member(row) for row in rows[:limit]],
        next_cursor=next_cursor(limits.cursor_key, listing, page_rows, limit, moment="created_at", row_id="user_id"),
    )


async def remove_member(
    conn: asyncpg.Connection,
    caller: DataCaller,
    collection_id: str,
    user_id: str,
    *,
    if_match: IfMatch | None = None,
    request_id: str | None = None,
) -> None:
    """End ``user_id``'s membership: the owner removes (reason ``removed``), a member leaves (``left``)."""
    member = _member_uuid(user_id, missing=True)
    actor = caller_uuid(caller)
    access = await collection_access(conn, caller, collection_id, lock="share")
    if member == access.collection.owner_id:
        raise Unprocessable("the owner is not a member of their own collection", code="owner-not-member")
    leaving = member == actor and access.role in ("viewer", "editor")
    if not leaving:
        access.require_owner("remove members")
    current = await conn.fetchrow(
        f"SELECT {MEMBER_COLUMNS} FROM data.members WHERE collection_id = $1 AND user_id = $2 FOR UPDATE",
        access.id,
        member,
    )
    if current is None:
        raise MemberNotFound("no such member")
    if if_match is not None and not if_match.matches(current["version"]):
        raise PreconditionFailed("the member changed since this version was read")
    await conn.execute("DELETE FROM data.members WHERE collection_id = $1 AND user_id = $2", access.id, member)
    await record_collection_event(
        conn,
        MEMBER_REMOVED,
        MemberRemoved(
            collection_id=access.id, user_id=member, role=current["role"], reason="left" if leaving else "removed"
        ),
        access.id,
        subject=_subject(access.id, member),
        request_id=request_id,
        actor=actor,
    )
