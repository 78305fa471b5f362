"""The ``strata`` command: start, stop, inspect and migrate a strata system.

Every failure an operator can act on is printed as one line and exits 1;
a traceback means a bug in strata.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from strata.actors.postgres import DatabaseError
from strata.cluster import _lifecycle, _status
from strata.cluster._cli_dlq import dlq_app
from strata.cluster._cli_events import events_app
from strata.cluster._cli_kafka import kafka_users_app
from strata.cluster._cli_keys import keys_app
from strata.cluster._cli_scale import scale_command
from strata.cluster._cli_users import users_app
from strata.cluster._components import migrate_async
from strata.cluster._deployments import render_deployments
from strata.cluster._errors import ClusterError
from strata.cluster._kafka import resolve_jars
from strata.cluster._logs import follow
from strata.cluster._runtime import cache_dir, resolve
from strata.cluster._state import State, running_any
from strata.schemas import Settings

app = typer.Typer(
    name="strata",
    help="Run strata: PostgreSQL, Kafka, a Ray head and the Serve apps, on loopback by default.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


events_app.add_typer(dlq_app, name="dlq")
app.add_typer(events_app, name="events")
app.add_typer(keys_app, name="keys")
app.add_typer(kafka_users_app, name="kafka-user")
app.add_typer(users_app, name="users")
app.command("scale")(scale_command)


def _echo(message: str) -> None:
    typer.echo(message)


def _settings() -> Settings:
    return Settings()


@app.command()
def up(
    foreground: Annotated[
        bool, typer.Option("--foreground", help="Stay attached: stream the logs; Ctrl-C stops everything.")
    ] = False,
) -> None:
    """Start every component that is not running, wait until the gateway is ready, print its URL."""
    settings = _settings()
    # In the foreground this command owns the system: if it is killed before it can stop it, the next `strata up`
    # or `strata down --orphans` finds the system orphaned.
    runtime = _lifecycle.up(settings, echo=_echo, owner=os.getpid() if foreground else None)
    typer.echo(f"gateway:   {runtime.gateway_url}")
    typer.echo(f"dashboard: {runtime.dashboard_url}  (serve status --address {runtime.dashboard_url})")
    metrics = _status.status_metrics_url(settings)
    if metrics:
        typer.echo(f"metrics:   {metrics}  (Prometheus)")
    if not foreground:
        return
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stopping.set())
    typer.echo("streaming logs; press Ctrl-C to stop strata")
    data_dir = runtime.settings.data_dir
    stopped_elsewhere = _StoppedElsewhere(data_dir)
    try:
        follow(data_dir, _echo, stop=lambda: stopping.is_set() or stopped_elsewhere())
    except KeyboardInterrupt:
        pass
    if not stopping.is_set():
        _reap_children()  # the TLS front is this process's child: once stopped, it must not stay a zombie
        typer.echo("strata was stopped from elsewhere (strata down); leaving")
        return
    typer.echo("stopping strata")
    _lifecycle.down(settings, echo=_echo)
    typer.echo("strata is down")


class _StoppedElsewhere:
    """Whether no process the system recorded runs any more (`strata down` in another shell), checked every 2 s."""

    def __init__(self, data_dir: Path, every_s: float = 2.0) -> None:
        self._data_dir = data_dir
        self._every_s = every_s
        self._next = time.monotonic() + every_s

    def __call__(self) -> bool:
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self._every_s
        _reap_children()
        return not running_any(State.load(self._data_dir))


def _reap_children() -> None:
    """Collect the exit status of every child of this process that has ended (none is left a zombie)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


@app.command()
def down(
    orphans: Annotated[
        bool,
        typer.Option(
            "--orphans",
            help="Instead: stop every strata system of this user whose owner (a test session, a benchmark, a"
            " foreground `strata up`) died without stopping it. A throw-away data dir is removed, a kept one keeps"
            " its data.",
        ),
    ] = False,
) -> None:
    """Stop exactly what `strata up` started (recorded under the data dir), in reverse order."""
    if orphans:
        stopped = _lifecycle.down_orphans(echo=_echo)
        typer.echo(f"{len(stopped)} orphaned strata systems stopped")
        return
    pids = _lifecycle.down(_settings(), echo=_echo)
    typer.echo(f"strata is down ({len(pids)} processes stopped)")


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False) -> None:
    """Show each component (pids, address, state) and each Serve app."""
    report = _status.status(_settings())
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(f"{'COMPONENT':<10} {'STATE':<12} {'ADDRESS':<28} PIDS")
    for c in report["components"]:
        pids = ",".join(str(p) for p in c["pids"][:6]) + (" ..." if len(c["pids"]) > 6 else "")
        typer.echo(f"{c['name']:<10} {c['state']:<12} {c['address']:<28} {pids}")
    if report.get("metrics"):
        typer.echo(f"metrics    {report['metrics']}")
    typer.echo("")
    apps: dict[str, Any] = report["apps"]
    deployments: list[dict[str, Any]] = report["deployments"]
    if not apps and not deployments:
        typer.echo("(Serve is not running)")
    else:
        typer.echo(f"{'APP':<10} STATUS")
        for name, info in apps.items():
            typer.echo(f"{name:<10} {info['status']}")
        typer.echo("")
        for line in render_deployments(deployments, now=time.time()):
            typer.echo(line)
    replication: list[dict[str, Any]] = report.get("replication") or []
    if replication:
        typer.echo("")
        typer.echo(f"{'STANDBY':<18} {'STATE':<12} {'LAG(bytes)':>10} {'LAG(s)':>8}")
        for standby in replication:
            if "error" in standby:
                typer.echo(f"{'?':<18} error {standby['error']}")
                continue
            seconds = "-" if standby["lag_s"] is None else f"{standby['lag_s']:.3f}"
            typer.echo(f"{standby['name']:<18} {standby['state']:<12} {standby['lag_bytes']:>10} {seconds:>8}")
    events: dict[str, Any] = report.get("events") or {}
    if events:
        typer.echo("")
        typer.echo(f"{'OUTBOX':<10} {'UNSENT':>8} {'OLDEST(s)':>10}")
        for service, backlog in events.get("outbox", {}).items():
            if isinstance(backlog, dict):
                typer.echo(f"{service:<10} {backlog.get('rows', '?'):>8} {backlog.get('oldest_age_s', '?'):>10}")
            else:
                typer.echo(f"{service:<10} {backlog}")
        typer.echo("")
        typer.echo(f"{'CONSUMER':<10} {'LAG':>8}")
        for group, info in events.get("consumers", {}).items():
            typer.echo(f"{group:<10} {info.get('lag', info.get('error', '?')):>8}")


@app.command("kafka-jars")
def kafka_jars() -> None:
    """Fetch the embedded Kafka's jars from Maven Central into the cache (once; later runs reuse them)."""
    if not _settings().embedded_kafka:
        typer.echo("STRATA_KAFKA_BOOTSTRAP_SERVERS is set: no embedded Kafka, no jars needed")
        return
    path = resolve_jars(cache_dir())
    typer.echo(f"Kafka jars ready in {path}")


@app.command()
def migrate() -> None:
    """Create each service's role and schema and apply pending migrations (PostgreSQL must be running)."""
    settings = _settings()
    runtime = resolve(settings, State.load(settings.data_dir.resolve()))
    applied = asyncio.run(migrate_async(runtime.settings, echo=_echo))
    total = sum(len(v) for v in applied.values())
    typer.echo(f"migrations up to date ({total} applied now)")


def _setting_name(error: Mapping[str, Any]) -> str:
    loc = error.get("loc") or ()
    return f"STRATA_{str(loc[0]).upper()}" if loc else "the settings"


def main() -> None:
    """Console-script entry point: one line and exit 1 for every error an operator can act on.

    Usage errors, ``--help`` and Ctrl-C are handled by typer's standalone mode;
    strata's own errors come out of it and are printed here.
    """
    try:
        app()
    except (ClusterError, DatabaseError) as exc:
        typer.echo(f"strata: error: {exc}", err=True)
        sys.exit(1)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        typer.echo(f"strata: error: invalid setting {_setting_name(first)}: {message}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
