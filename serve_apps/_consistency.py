"""A caller's consistency, carried across the one hop from a client to a service replica and back: the replica's side.

A typed client called inside a :class:`~strata.actors.ReadScope` (the gateway opens one per request) passes the
scope's position to the service as one extra keyword argument, and gets the service's answer wrapped in a
:class:`~strata.contracts.Consistent`, which also carries the commit position of the call's writes and the staleness of
its reads; the client folds both into the scope and returns the answer alone. Outside a request's scope (the CLI, a
script, a test) the clients of a process share one scope (``PROCESS_SCOPE`` in :mod:`strata.contracts`): a script
reads its own writes. What travels (:class:`~strata.contracts.ReadAfter`, :class:`~strata.contracts.Consistent`)
is the contracts' (:mod:`strata.contracts._hop`), so that callers need no server code to speak it.

On the replica side, :func:`consistent` wraps each call of a service deployment (``ServiceReplica`` applies it to
every public method a service defines): it opens the scope for the call, so the replica's ``Database`` routes reads
by it and records commits in it.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from strata.actors import read_scope
from strata.contracts import CONSISTENCY_ARGUMENT, Consistent, ReadAfter

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")


def consistent(
    method: Callable[Concatenate[S, P], Awaitable[R]],
) -> Callable[Concatenate[S, P], Awaitable[R]]:
    """``method`` that, when its caller passes a :class:`ReadAfter`, runs in a read scope and answers a
    :class:`Consistent`; called without one, it is ``method`` itself."""

    @functools.wraps(method)
    async def call(self: S, /, *args: P.args, **kwargs: P.kwargs) -> Any:
        asked = kwargs.pop(CONSISTENCY_ARGUMENT, None)
        if not isinstance(asked, ReadAfter):
            return await method(self, *args, **kwargs)
        with read_scope(asked.position) as scope:
            value = await method(self, *args, **kwargs)
        return Consistent(value, scope.committed, scope.staleness_s, scope.clamped)

    call.__strata_consistent__ = True  # type: ignore[attr-defined]
    return call
