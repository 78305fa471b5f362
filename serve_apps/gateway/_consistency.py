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

The token is signed: ``16/B374D848.<mac>``, the position and an HMAC-SHA256 of it (truncated to 128 bits,
base64url) under a key derived for this purpose alone (:meth:`~strata.schemas.Settings.consistency_token_key`). A
position strata never answered cannot make reads wait for a standby that will never reach it, go to the primary and
pass over caches (``FFFFFFFF/FFFFFFFF`` did just that). What a header gets:

- a token strata signed: honoured;
- a well-formed position without a valid signature (forged, from before signing, or signed under another master
  secret): ignored, as if absent (the session's own writes are still seen), and counted in
  ``strata_consistency_tokens_ignored_total``;
- anything else (not ``X/Y[.mac]``, or longer than :data:`MAX_TOKEN_CHARS`): 400 ``invalid-consistency-token``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from strata.actors import InvalidPosition, ReadScope, format_lsn, inc_counter, parse_lsn, read_scope
from strata.actors.positions import SessionPositions, SharedPositions
from strata.schemas import InvalidConsistencyToken
from strata.serve_apps.gateway._tokens import AccessClaims

CONSISTENCY_HEADER = "Strata-Consistency"
STALENESS_HEADER = "Strata-Staleness"
MAX_TOKEN_CHARS = 64
"""The longest header taken (a signed token is at most 17 + 1 + 22 characters); longer is a 400, never parsed."""
DEFAULT_TTL_S = 11.0
_MAC_BYTES = 16


class TokenSigner:
    """Signs the positions the gateway hands out and verifies the tokens clients send back (see the module doc)."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a consistency token key has at least 16 bytes")
        self._key = key

    def _mac(self, position: int) -> str:
        digest = hmac.new(self._key, b"strata-consistency:" + position.to_bytes(8, "big"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:_MAC_BYTES]).rstrip(b"=").decode()

    def sign(self, position: int) -> str:
        """The token naming ``position``: ``16/B374D848.<mac>``."""
        return f"{format_lsn(position)}.{self._mac(position)}"

    def verify(self, header: str | None) -> int | None:
        """The position a ``Strata-Consistency`` header names if strata signed it; ``None`` for no header or one
        that is well formed but not signed by this key; :class:`InvalidConsistencyToken` for anything else."""
        if header is None or not header.strip():
            return None
        if len(header) > MAX_TOKEN_CHARS:
            raise InvalidConsistencyToken(f"a {CONSISTENCY_HEADER} token is at most {MAX_TOKEN_CHARS} characters")
        lsn, dot, mac = header.strip().partition(".")
        try:
            position = parse_lsn(lsn)
        except InvalidPosition:
            raise InvalidConsistencyToken(
                f"{CONSISTENCY_HEADER} takes the token of an earlier answer's {CONSISTENCY_HEADER} header,"
                " like 0/16B3748.kq2vX1pZ0T4Wn8yLQm7c3A"
            ) from None
        if dot and hmac.compare_digest(mac.encode(), self._mac(position).encode()):
            return position
        inc_counter(
            "strata_consistency_tokens_ignored_total",
            "Strata-Consistency tokens ignored: a position strata did not sign (forged, or signed under another key).",
            {},
        )
        return None


def consistency_signer(state: Any) -> TokenSigner:
    """The replica's signer (``app.state.consistency_signer``, made when the replica starts from the settings' key);
    one with a random key where none was made (app tests)."""
    signer = getattr(state, "consistency_signer", None)
    if not isinstance(signer, TokenSigner):
        signer = state.consistency_signer = TokenSigner(secrets.token_bytes(32))
    return signer


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


async def read_after(
    scope: ReadScope,
    header: str | None,
    caller: AccessClaims,
    positions: SharedPositions,
    signer: TokenSigner,
    *,
    ask_shared: bool,
) -> None:
    """Set what the request's reads must see: the client's token (if strata signed it), else the session's newest
    write.

    A client that sends its token knows what it wrote; one that does not gets the session's position, from the
    other replicas too when ``ask_shared`` (a read: the one kind of request a standby may serve).
    """
    token = signer.verify(header)
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
        signer = consistency_signer(scope["app"].state)
        with read_scope() as reads:

            async def send_with_position(message: Message) -> None:
                if message["type"] == "http.response.start":
                    caller = state.get("caller")
                    # Remembered before the answer leaves: the client's next request may follow it at once.
                    if reads.committed is not None and isinstance(caller, AccessClaims):
                        await positions.remember(session_of(caller), reads.committed)
                    message["headers"] = [*message.get("headers", ()), *headers_of(reads, signer)]
                await send(message)

            await self.app(scope, receive, send_with_position)


def headers_of(reads: ReadScope, signer: TokenSigner) -> list[tuple[bytes, bytes]]:
    headers = []
    if reads.position is not None:
        headers.append((CONSISTENCY_HEADER.lower().encode(), signer.sign(reads.position).encode()))
    if reads.staleness_s is not None:
        headers.append((STALENESS_HEADER.lower().encode(), f"{reads.staleness_s:.3f}".encode()))
    return headers
