"""`strata up` and `strata down`, and one component at a time: loops over the ordered list of components.

Up: refuse what would fail (taken ports, missing tools, unreachable servers),
then for each component of :data:`~strata.cluster._components.LIFECYCLE` in
order start it unless it runs (or is external) and provision it, then wait for
the gateway's ``/readyz``. Down is the reverse. What was started is recorded in
``<data_dir>/state.json`` (:mod:`strata.cluster._state`); a component recorded
but dead (a crashed run) has its leftovers stopped and is started again. A start
that fails stops what that run started, in reverse order. Each system is also
recorded with its owner in the per-user registry (:mod:`strata.cluster._systems`):
`up` first stops the throw-away systems whose owner died, and `down` forgets it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from strata.cluster._component import GATEWAY, Component, Context, Echo, quiet, running
from strata.cluster._components import components_of
from strata.cluster._errors import PortInUse, StartupError
from strata.cluster._probes import http_ready, wait_until
from strata.cluster._runtime import Runtime, resolve
from strata.cluster._state import Recorded, State, exclusive, port_in_use
from strata.cluster._systems import SystemRecord, register, stop_orphans, unregister
from strata.schemas import Settings


def check_before_start(components: Sequence[Component], state: State) -> None:
    """Refuse, before anything starts, what would fail later, for every component that does not run.

    Ports first, from the public edge inwards (reverse start order): when another strata holds the default ports,
    the error names the gateway's, the one an operator knows. Then each component's own checks, in order.
    """
    waiting = [c for c in components if not running(state.components.get(c.name))]
    for component in reversed(waiting):
        for claim in component.ports():
            if port_in_use(claim.host, claim.port):
                raise PortInUse(
                    f"port {claim.port} on {claim.host} ({claim.what}) is already in use;"
                    " free it or choose another port in the settings"
                )
    for component in waiting:
        component.preflight()


def start_components(
    components: Sequence[Component],
    state: State,
    *,
    save: Callable[[], None],
    echo: Echo,
    finish: Callable[[], None] = lambda: None,
) -> list[str]:
    """Start, in order, each component that applies and does not run, and provision every one; then ``finish()``.

    Each record is saved as it is made. When anything fails (a start, a provision, ``finish``), what this call
    started is stopped, in reverse order, and the error raised again. Returns the names it started.
    """
    started: list[str] = []

    def record(entry: Recorded) -> None:
        state.components[entry.name] = entry
        started.append(entry.name)
        save()

    try:
        for component in components:
            if component.applies() and not running(state.components.get(component.name)):
                component.start(record, echo)
            component.provision(echo)
        finish()
    except BaseException:
        echo("start failed; stopping what this run started")
        stop_components(components, state, only=started)
        save()
        raise
    return started


def stop_components(
    components: Sequence[Component], state: State, *, only: Collection[str] | None = None, echo: Echo = quiet
) -> list[int]:
    """Stop the components named in ``only`` (all when ``None``) and those depending on them, in reverse order,
    and forget their records; returns the pids stopped."""
    selected: list[Component] = []
    names: set[str] = set()
    for component in components:  # dependencies come earlier in the list: one pass finds every dependent
        if only is None or component.name in only or names.intersection(component.depends_on):
            selected.append(component)
            names.add(component.name)
    stopped: list[int] = []
    for component in reversed(selected):
        recorded = state.components.get(component.name)
        if recorded is None and not component.applies():
            continue
        stopped += component.stop(recorded, echo)
        state.components.pop(component.name, None)
    if any(component.serves_gateway for component in selected):
        state.components.pop(GATEWAY, None)
    return stopped


def _stale(recorded: Recorded | None) -> bool:
    # Processes recorded and not all of them alive: what a crash (or a killed server) leaves behind.
    return recorded is not None and bool(recorded.procs) and not recorded.alive()


def reap_stale(components: Sequence[Component], state: State, echo: Echo) -> None:
    """Components a crashed run left half-alive (some recorded process died): stop their leftovers so they start
    cleanly."""
    stale = [c.name for c in components if _stale(state.components.get(c.name))]
    if stale:
        echo(f"recovering from an earlier run that did not stop cleanly: {', '.join(stale)}")
        stop_components(components, state, only=stale)


def preflight(settings: Settings, state: State, runtime: Runtime) -> None:
    """Refuse, before starting anything, what would fail later: taken ports, missing tools, unreachable servers."""
    check_before_start(components_of(Context(settings, runtime, state)), state)


def _open_gateway(runtime: Runtime, state: State, save: Callable[[], None]) -> None:
    """Record the public endpoint, then wait until the gateway is ready (its apps, PostgreSQL and Kafka answer)."""
    state.components[GATEWAY] = Recorded(GATEWAY, runtime.gateway_url)
    save()
    verify = runtime.verify()
    timeout = runtime.settings.startup_timeout_s
    reason = wait_until(lambda: http_ready(runtime.gateway_url + "/readyz", verify=verify), timeout)
    if reason is not None:
        raise StartupError(f"the gateway at {runtime.gateway_url} is not ready: {reason}")


def up(
    settings: Settings,
    echo: Echo = print,
    *,
    owner: int | None = None,
    throwaway: bool = False,
    started_by: str = "strata up",
) -> Runtime:
    """Start whatever is not running yet and wait until the gateway is ready; harmless when all runs.

    ``owner`` is the process whose life the system shares (a test session, a benchmark, a foreground `strata up`);
    ``throwaway`` says its data dir is a temp dir. Both go to the per-user registry, so that the next `up` stops the
    system if its owner dies without stopping it. First, this `up` stops such orphans in throw-away data dirs.
    """
    data_dir = settings.data_dir.resolve()
    stop_orphans(lambda orphan: down(orphan, echo=quiet), throwaway_only=True, besides=data_dir, echo=echo)
    with exclusive(data_dir):
        register(settings, owner=owner, throwaway=throwaway, started_by=started_by)
        state = State.load(data_dir)
        runtime = resolve(settings, state)
        components = components_of(Context(settings, runtime, state))
        if (
            all(running(state.components.get(c.name)) for c in components if c.applies())
            and http_ready(runtime.gateway_url + "/healthz", verify=runtime.verify()) is None
        ):
            echo(f"strata is already running: {runtime.gateway_url}")
            return runtime
        reap_stale(components, state, echo)
        check_before_start(components, state)

        def save() -> None:
            state.save(data_dir)

        save()
        start_components(components, state, save=save, echo=echo, finish=lambda: _open_gateway(runtime, state, save))
        echo(f"strata is up: {runtime.gateway_url}")
        if runtime.ca_file is not None:
            echo(f"its certificate is issued by strata's local CA: {runtime.ca_file} (curl --cacert {runtime.ca_file})")
        return runtime


def down(settings: Settings, echo: Echo = print) -> list[int]:
    """Stop what strata started, in reverse order; returns the pids it stopped."""
    data_dir = settings.data_dir.resolve()
    if not data_dir.exists():
        echo("strata is not running")
        return []
    with exclusive(data_dir):
        state = State.load(data_dir)
        runtime = resolve(settings, state)
        pids = stop_components(components_of(Context(settings, runtime, state)), state, echo=echo)
        state.save(data_dir)
        unregister(data_dir)
        return pids


def down_orphans(echo: Echo = print) -> list[SystemRecord]:
    """Stop every system whose owner died without stopping it (:mod:`strata.cluster._systems`): a throw-away data
    dir is removed, a kept one keeps its data. Returns the systems stopped."""
    return stop_orphans(lambda orphan: down(orphan, echo=quiet), throwaway_only=False, echo=echo)


def stop_component(settings: Settings, name: str) -> None:
    """Stop one component (and those depending on it: stopping ``ray`` stops the front) and keep the rest running."""
    data_dir = settings.data_dir.resolve()
    with exclusive(data_dir):
        state = State.load(data_dir)
        runtime = resolve(settings, state)
        stop_components(components_of(Context(settings, runtime, state)), state, only=[name])
        state.save(data_dir)


def start_component(settings: Settings, name: str) -> None:
    """Start one embedded server (``postgres`` or ``kafka``) again, on its recorded port and data, and what
    depends on it and stopped with it (``postgres``'s standbys), so that the pair ``stop_component`` /
    ``start_component`` leaves things as they were.

    Their processes only: what ``up`` provisions on them (the database, roles, topics) is there from the first start.
    """
    data_dir = settings.data_dir.resolve()
    with exclusive(data_dir):
        state = State.load(data_dir)
        runtime = resolve(settings, state)
        components = components_of(Context(settings, runtime, state))
        component = next((c for c in components if c.name == name), None)
        if component is None or not component.standalone:
            raise ValueError(f"cannot start {name!r} alone; use `strata up`")
        names = {name}
        chosen = []
        for candidate in components:  # dependencies come earlier in the list: one pass finds every dependent
            wanted = candidate.name in names or names.intersection(candidate.depends_on)
            if wanted and candidate.standalone and candidate.applies():
                names.add(candidate.name)
                chosen.append(candidate)

        def record(entry: Recorded) -> None:
            state.components[entry.name] = entry
            state.save(data_dir)

        for candidate in chosen:
            if not running(state.components.get(candidate.name)):
                candidate.start(record, quiet)


__all__ = [
    "down",
    "down_orphans",
    "preflight",
    "start_component",
    "stop_component",
    "up",
]
