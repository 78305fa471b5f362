"""Read-your-writes across the primary and its standbys: commit positions (LSNs) and the scope a call carries them in.

A write answers the position of its commit in the primary's WAL; a read that names a position is served only by a
standby whose replay has reached it (or by the primary). The position travels as the PostgreSQL text form of an LSN
(``16/B374D848``): the gateway hands it to HTTP clients as the ``Strata-Consistency`` header, typed clients carry it
between calls, and inside a service replica it lives in a :class:`ReadScope` for the length of one call.

The scope is a context variable, so a unit of work needs no extra argument: :class:`~strata.actors.postgres.Database`
reads the caller's position from it when it routes a read, and adds the commit position of each write to it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")


class InvalidPosition(ValueError):
    """Text that is not a PostgreSQL LSN (``X/Y``, each part 1-8 hex digits)."""


def parse_lsn(text: str) -> int:
    """The WAL position ``text`` names, as an integer (``"0/16B3748"`` -> ``23803720``)."""
    match = _LSN.match(text.strip())
    if match is None:
        raise InvalidPosition(f"{text[:40]!r} is not a WAL position like '0/16B3748'")
    return (int(match[1], 16) << 32) | int(match[2], 16)


def format_lsn(position: int) -> str:
    """PostgreSQL's text form of a WAL position."""
    if not 0 <= position < 1 << 64:
        raise InvalidPosition(f"{position} is not a 64-bit WAL position")
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


@dataclass(slots=True)
class ReadScope:
    """One call's consistency: what its reads must see, what its writes committed, how stale a read may have been.

    - ``after``: reads must see every commit up to this position (the caller's token), or go to the primary.
    - ``committed``: the highest commit position of a write made in the scope (``None``: it wrote nothing).
    - ``staleness_s``: set when a read was served by a standby while the primary was unreachable: the answer holds
      every commit older than this many seconds, and maybe not the newer ones.
    - ``clamped``: set when ``after`` named a position past the primary's own (a token signed before the database was
      restored to an earlier point, or replaced): ``after`` is then the primary's position, and so is this.
    """

    after: int | None = None
    committed: int | None = None
    staleness_s: float | None = None
    clamped: int | None = None

    def clamp(self, primary: int) -> None:
        """If ``after`` is past ``primary`` (the primary's current position), no commit is there: take ``primary``."""
        if self.after is not None and self.after > primary:
            self.after = primary
            self.clamped = primary if self.clamped is None else min(self.clamped, primary)

    def wrote(self, position: int) -> None:
        self.committed = position if self.committed is None else max(self.committed, position)

    def stale(self, seconds: float) -> None:
        self.staleness_s = seconds if self.staleness_s is None else max(self.staleness_s, seconds)

    def merge(self, committed: int | None, staleness_s: float | None, clamped: int | None = None) -> None:
        """Fold in what a call made on this scope's behalf reported."""
        if clamped is not None:
            self.clamp(clamped)
        if committed is not None:
            self.wrote(committed)
        if staleness_s is not None:
            self.stale(staleness_s)

    @property
    def position(self) -> int | None:
        """The newest position this scope knows of: what a later read of the same caller must see."""
        known = [p for p in (self.after, self.committed) if p is not None]
        return max(known) if known else None


_SCOPE: ContextVar[ReadScope | None] = ContextVar("strata_read_scope", default=None)


def current_scope() -> ReadScope | None:
    """The scope of the call running now, if its caller asked for one."""
    return _SCOPE.get()


@contextlib.contextmanager
def read_scope(after: int | None = None) -> Iterator[ReadScope]:
    """Run the block in a new :class:`ReadScope` (reads see at least ``after``); yields it to read back."""
    scope = ReadScope(after=after)
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)
