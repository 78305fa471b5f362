"""The lifecycle protocol: what `up`, `down` and `status` ask of each process strata runs.

strata's processes are one ordered list of :class:`Component`
(:data:`strata.cluster._components.LIFECYCLE`), and the commands are loops over it
(:mod:`strata.cluster._lifecycle`, :mod:`strata.cluster._status`):

- ``up``: for each component in order, ``start()`` it unless it runs already or
  does not apply (an external server), then ``provision()`` it (migrations, topics,
  Serve apps: on what runs, whoever started it);
- ``down``: ``stop()`` each in reverse order; stopping one also stops, first, every
  component that ``depends_on`` it;
- ``status``: one ``status()`` row each.

A component runs when its entry in ``state.json`` (:class:`~strata.cluster._state.Recorded`)
names processes and every one of them is alive. Adding a component is one class
implementing :class:`Component` and one entry in ``LIFECYCLE``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from strata.cluster._runtime import Runtime
from strata.cluster._state import Recorded, State, terminate
from strata.schemas import Settings

Echo = Callable[[str], None]
"""Where a component says what it does, one line at a time (the CLI prints them)."""

Record = Callable[[Recorded], None]
"""Called by ``start()`` as soon as a process exists: the entry is saved at once, so that a failure later in the
same start (a server that never gets ready) still stops it."""

GATEWAY = "gateway"
"""The entry of ``state.json`` for the public endpoint: recorded once `up` has started every component, forgotten when
a component that serves it stops. It names no process."""

RowState = Literal["running", "stopped", "dead", "external"]


def quiet(_: str) -> None:
    """An :data:`Echo` that says nothing."""


@dataclass(frozen=True, slots=True)
class PortClaim:
    """A port a component will listen on: preflight refuses to start while something else holds it."""

    what: str
    """As the error names it: ``PostgreSQL``, ``Ray dashboard``."""
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class StatusRow:
    """One line of ``strata status``: a component, its live pids, where it listens, and its state."""

    name: str
    pids: list[int]
    address: str
    state: RowState

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "pids": self.pids, "address": self.address, "state": self.state}


def running(recorded: Recorded | None) -> bool:
    """Whether a recorded component runs: it recorded processes and all of them are alive."""
    return recorded is not None and recorded.alive()


def stop_recorded(
    recorded: Recorded | None, echo: Echo, what: str, *, timeout: float, gently: Callable[[], None] | None = None
) -> list[int]:
    """Stop the processes a component recorded (``stopping <what>``), after ``gently()`` if given (the server's own
    shutdown); what is left is terminated. Their pids, or none without a record."""
    if recorded is None:
        return []
    echo(f"stopping {what}")
    if gently is not None:
        gently()
    terminate(recorded.procs, timeout=timeout)
    return recorded.pids


def recorded_row(name: str, recorded: Recorded | None) -> StatusRow:
    """The row of a component strata runs, from its record: ``stopped`` without one, ``dead`` when none of its
    processes is alive, else ``running`` with the live ones."""
    if recorded is None:
        return StatusRow(name, [], "", "stopped")
    alive = [p.pid for p in recorded.procs if p.alive()]
    return StatusRow(name, alive, recorded.address, "running" if alive else "dead")


@dataclass(frozen=True)
class Context:
    """What the components of one `up`, `down` or `status` work with."""

    configured: Settings
    """The settings as given: they say which servers are embedded (resolved ones have every address filled in)."""
    runtime: Runtime
    """The resolved settings, URLs and environments every process receives."""
    state: State
    """``state.json`` as loaded; the loops record and forget entries, the caller saves it."""


class Component(Protocol):
    """A process (or a group of processes) strata starts, stops and reports on; see the module's docstring."""

    @property
    def name(self) -> str:
        """Its entry in ``state.json`` and its row in ``strata status``."""

    @property
    def depends_on(self) -> tuple[str, ...]:
        """Components (earlier in the list) it cannot run without: stopping one of them stops this one first."""

    @property
    def serves_gateway(self) -> bool:
        """Whether the public endpoint goes through it: stopping it forgets the :data:`GATEWAY` entry."""

    @property
    def standalone(self) -> bool:
        """Whether ``start_component`` may start it alone: nothing else must follow its start."""

    def applies(self) -> bool:
        """Whether strata runs it here: ``False`` for an external server, or in a mode that has no use for it."""

    def ports(self) -> list[PortClaim]:
        """The ports on this machine that must be free before it starts (checked only when it does not run)."""

    def preflight(self) -> None:
        """Refuse, before anything starts, what would make its start fail: a missing tool, an external server that
        does not answer. Raises a :class:`~strata.cluster._errors.PreflightError`; called only when it does not
        run."""

    def start(self, record: Record, echo: Echo) -> None:
        """Start its processes and ``record`` them as soon as they exist. Called when it applies and does not run,
        by ``up`` and by ``start_component`` (which may be called from a running event loop: no ``asyncio.run``)."""

    def provision(self, echo: Echo) -> None:
        """Wait until it serves, then bring what it serves up to date (database, migrations, topics, Serve apps),
        whether this run started it, it ran already, or it is external. Called by ``up`` after ``start()``,
        before the next component starts."""

    def stop(self, recorded: Recorded | None, echo: Echo) -> list[int]:
        """Stop its processes (``recorded``, or found otherwise); returns the pids it stopped. Called when it has a
        record or applies; the caller forgets the record afterwards."""

    def status(self, recorded: Recorded | None) -> StatusRow | None:
        """Its row in ``strata status``; ``None`` when this mode has no such component."""


ComponentFactory = Callable[[Context], Component]
"""How the ordered list names a component: called once per command with that command's :class:`Context`."""
