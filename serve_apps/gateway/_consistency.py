"""Read-your-writes at the edge: the ``Strata-Consistency`` token, and the position the gateway remembers per session.

Every request runs in a :class:`~strata.actors.postgres.ReadScope`. Its reads must see:

- the token the client sent back in ``Strata-Consistency`` (the header of an earlier answer), and
- the newest commit of the caller's session that this gateway replica has answered (so a client that ignores the
  header still reads its own writes through this replica).

The services route each read by that position (a standby that has replayed it, else the primary) and report the
commit position of each write. The answer carries ``Strata-Consistency`` with the newest position the request knows
of, and ``Strata-Staleness`` (seconds) when a read was served by a standby while the primary was unreachable: the
answer then holds every write older than that, perhaps not the newer ones.

A session's position is worth remembering only while a standby in rotation may not have replayed it, so an entry
lives twice the lag bound (a standby further behind leaves rotation) and the memory is bounded in size.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from strata.actors.positions import SessionPositions, SharedPositions
from strata.actors.postgres import InvalidPosition, ReadScope, format_lsn, parse_lsn, read_scope
from strata.schemas import InvalidConsistencyToken
from strata.serve_apps.gateway._tokens import AccessClaims

CONSISTENCY_HEADER = "Strata-Consistency"
STALENESS_HEADER = "Strata-Staleness"
_MAX_TOKEN_CHARS = 40
DEFAULT_TTL_S = 11.0


def session_positions(state: Any) -> SharedPositions:
    """The replica's session positions (``app.state.session_positions``: shared with the other replicas through the
    ledger shards, made when the replica starts); this replica's memory alone where none was made (app tests)."""
    positions = getattr(state, "session_positions", None)
    if not isinstance(positions, SharedPositions):
        positions = state.session_positions = SharedPositions(SessionPositions(ttl_s=DEFAULT_TTL_S))
    return positions


def session_of(caller: AccessClaims) -> str:
    """The key of a caller's session: the token's ``sid``, or its subject for a token without one."""
    return f"sid:{caller.session_id}" if caller.session_id else f"sub:{caller.user_id}"


def token_position(header: str | None) -> int | None:
    """The position a ``Strata-Consistency`` header names; :class:`InvalidConsistencyToken` if it names none."""
    if header is None or not header.strip():
        return None
    if len(header) > _MAX_TOKEN_CHARS:
        raise InvalidConsistencyToken(f"a {CONSISTENCY_HEADER} token is at most {_MAX_TOKEN_CHARS} characters")
    try:
        return parse_lsn(header)
    except InvalidPosition:
        raise InvalidConsistencyToken(
            f"{CONSISTENCY_HEADER} takes the token of an earlier answer's {CONSISTENCY_HEADER} header, like 0/16B3748"
        ) from None


async def read_after(
    scope: ReadScope,
    header: str | None,
    caller: AccessClaims,
    positions: SharedPositions,
    *,
    ask_shared: bool,
) -> None:
    """Set what the request's reads must see: the client's token, else the session's newest write.

    A client that sends its token knows what it wrote; one that does not gets the session's position, from the
    other replicas too when ``ask_shared`` (a read: the one kind of request a standby may serve).
    """
    token = token_position(header)
    remembered = await positions.position(session_of(caller), shared=token is None and ask_shared)
    present = [p for p in (token, remembered) if p is not None]
    if present:
        scope.after = max(present)


class ConsistencyTokens:
    """ASGI middleware: one read scope per request; the answer's headers; the session's newest commit remembered.

    The request's ``after`` is set by the route's authorization (:func:`read_after`), which knows the caller. The
    replica's :class:`SessionPositions` are ``app.state.session_positions`` (made when the replica starts).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        positions = session_positions(scope["app"].state)
        with read_scope() as reads:

            async def send_with_position(message: Message) -> None:
                if message["type"] == "http.response.start":
                    caller = state.get("caller")
                    # Remembered before the answer leaves: the client's next request may follow it at once.
                    if reads.committed is not None and isinstance(caller, AccessClaims):
                        await positions.remember(session_of(caller), reads.committed)
                    message["headers"] = [*message.get("headers", ()), *headers_of(reads)]
                await send(message)

            await self.app(scope, receive, send_with_position)


def headers_of(reads: ReadScope) -> list[tuple[bytes, bytes]]:
    headers = []
    if reads.position is not None:
        headers.append((CONSISTENCY_HEADER.lower().encode(), format_lsn(reads.position).encode()))
    if reads.staleness_s is not None:
        headers.append((STALENESS_HEADER.lower().encode(), f"{reads.staleness_s:.3f}".encode()))
    return headers
