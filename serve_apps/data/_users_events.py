"""What the data service learns from the users service's events (consumer group ``data``).

On ``strata.users.user.deleted.v1``: every membership of the user ends (one ``member_removed`` each, reason
``user_deleted``), then every collection they own is deleted with its items and members (one
``collection.deleted`` each, reason ``owner_deleted``, with its item count). Other users events change nothing here.
The runner applies each event once (``data.inbox``, same transaction), so a redelivery has no second effect.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import asyncpg

from strata.schemas.events import MEMBER_REMOVED, USER_DELETED, CloudEvent, MemberRemoved
from strata.serve_apps.data._access import COLLECTION_COLUMNS, public_collection
from strata.serve_apps.data._collections import delete_locked_collection, record_collection_event

logger = logging.getLogger(__name__)


async def apply_users_event(conn: asyncpg.Connection, event: CloudEvent[Any]) -> None:
    """The data service's effect of one users event (see the module docstring); others are ignored."""
    if event.type != USER_DELETED.type:
        return
    try:
        user_id = str(uuid.UUID(str(event.data["user_id"])))
    except (KeyError, ValueError, TypeError):
        logger.warning("users event %s names no user id the data service knows; ignored", event.id)
        return
    actor = event.actor or "system"
    memberships = await conn.fetch(
        "DELETE FROM data.members WHERE user_id = $1 RETURNING collection_id::text AS collection_id, role", user_id
    )
    for row in memberships:
        await record_collection_event(
            conn,
            MEMBER_REMOVED,
            MemberRemoved(collection_id=row["collection_id"], user_id=user_id, role=row["role"], reason="user_deleted"),
            row["collection_id"],
            subject=f"collection/{row['collection_id']}/member/{user_id}",
            request_id=event.requestid,
            actor=actor,
        )
    owned = await conn.fetch(
        f"SELECT {COLLECTION_COLUMNS} FROM data.collections c WHERE c.owner_id = $1 ORDER BY c.created_at FOR UPDATE",
        user_id,
    )
    for row in owned:
        await delete_locked_collection(
            conn, public_collection(row), reason="owner_deleted", request_id=event.requestid, actor=actor
        )
    if memberships or owned:
        logger.info(
            "user %s deleted: %d membership(s) ended, %d collection(s) deleted", user_id, len(memberships), len(owned)
        )
