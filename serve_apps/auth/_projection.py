"""What the auth service learns from the users service's events (consumer group ``auth``).

The users service owns roles and decides who is disabled or deleted; the auth
service keeps a copy of what goes into tokens and decides who may log in. It
learns changes from events on ``strata.users.user.v1``, never from a call:

- ``roles_changed``: the account's ``roles`` and ``perm_version`` become the
  event's, which every token issued from then on carries (login and refresh
  read them afresh). Applied only when the event's ``perm_version`` is above
  the stored one: a redelivered older event may arrive after a newer one.
- ``disabled``: the account can no longer log in or refresh, and every session
  is revoked, recording ``sessions_revoked`` (reason ``disabled``) so gateways
  refuse the user's access tokens at once.
- ``enabled``: the account may log in again (its sessions stay ended).
- ``deleted``: every session is revoked (``sessions_revoked``, reason
  ``deleted``), then the account row is deleted (its refresh tokens with it).
  The email is free again: registering it makes a new account, with a new id.

Events about an account the auth service does not have change nothing. The
runner applies each event once (the ``auth.inbox`` table, same transaction).
Revocations are stamped with this process's clock, as the auth replicas stamp
theirs (the handler's signature has no room for an injected one).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import asyncpg

from strata.schemas.events import USER_DELETED, USER_DISABLED, USER_ENABLED, USER_ROLES_CHANGED, CloudEvent
from strata.serve_apps.auth._refresh import revoke_all

logger = logging.getLogger(__name__)


async def apply_users_event(conn: asyncpg.Connection, event: CloudEvent[Any]) -> None:
    """The auth service's effect of one users event (see the module docstring); others are ignored."""
    user_id = str(event.data["user_id"])
    if event.type == USER_ROLES_CHANGED.type:
        await conn.execute(
            "UPDATE auth.accounts SET roles = $2, perm_version = $3 WHERE user_id = $1 AND perm_version < $3",
            user_id,
            list(event.data["roles"]),
            int(event.data["perm_version"]),
        )
    elif event.type == USER_DISABLED.type:
        exists = await conn.fetchval(
            "UPDATE auth.accounts SET disabled = true WHERE user_id = $1 RETURNING true", user_id
        )
        if exists:
            revoked = await revoke_all(
                conn, datetime.now(UTC), user_id, "disabled", event.requestid, actor=event.actor or "system"
            )
            logger.info("account %s disabled; %d session(s) revoked", user_id, revoked)
    elif event.type == USER_ENABLED.type:
        await conn.execute("UPDATE auth.accounts SET disabled = false WHERE user_id = $1", user_id)
    elif event.type == USER_DELETED.type:
        # FOR NO KEY UPDATE, as revoke_all takes it: FOR UPDATE would deadlock with a rotation in flight, whose
        # child insert takes FOR KEY SHARE on the account while it holds its family. Once revoke_all has every
        # family, no rotation holds the account, and the DELETE's own FOR UPDATE waits for nobody.
        exists = await conn.fetchval("SELECT true FROM auth.accounts WHERE user_id = $1 FOR NO KEY UPDATE", user_id)
        if exists:
            revoked = await revoke_all(
                conn, datetime.now(UTC), user_id, "deleted", event.requestid, actor=event.actor or "system"
            )
            await conn.execute("DELETE FROM auth.accounts WHERE user_id = $1", user_id)
            logger.info("account %s deleted; %d session(s) revoked", user_id, revoked)
