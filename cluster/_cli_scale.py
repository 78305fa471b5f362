"""`strata scale APP`: change an app's replica bounds on the running system, and record them for the next `strata up`.

The bounds are recorded in ``<data_dir>/scale.json`` (:mod:`strata.cluster._scale`) and the whole Serve config, the one
`strata up` deploys with the new bounds in it, is deployed again through the dashboard. Serve takes a change of
``autoscaling_config`` or ``num_replicas`` as a lightweight update: no replica of any app restarts for it.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from strata.cluster import _serve
from strata.cluster._component import running
from strata.cluster._components import RayHeadComponent
from strata.cluster._errors import ScaleRefused, StartupError
from strata.cluster._runtime import resolve, write_credentials
from strata.cluster._scale import MAX_REPLICAS, Bounds, check_bounds, deployment_bounds, load_scale, save_scale
from strata.cluster._state import State, exclusive
from strata.cluster._tls import ensure_certificate
from strata.schemas import Settings


def requested_bounds(*, low: int | None, high: int | None, replicas: int | None, reset: bool) -> Bounds | None:
    """What the options ask for: bounds, or ``None`` to drop the record (``--reset``); refuses a mix that means
    nothing."""
    if reset:
        if low is not None or high is not None or replicas is not None:
            raise ScaleRefused("--reset drops the app's recorded bounds; give it without --min, --max or --replicas")
        return None
    if replicas is not None:
        if low is not None or high is not None:
            raise ScaleRefused("--replicas N sets both bounds to N; give it without --min or --max")
        if not 1 <= replicas <= MAX_REPLICAS:
            raise ScaleRefused(f"--replicas {replicas}: replicas must be between 1 and {MAX_REPLICAS}")
        return Bounds(replicas, replicas)
    if low is None and high is None:
        raise ScaleRefused("give --min, --max, --replicas or --reset")
    return Bounds(low, high)


def scale(settings: Settings, app: str, wanted: Bounds | None) -> tuple[dict[str, dict[str, int]], bool]:
    """Record ``wanted`` for ``app`` (``None``: drop its record) and apply it to the running system, if any.

    Returns the app's deployments' bounds as the config now has them, and whether they were applied (False: strata's
    Serve apps are not running, the record waits for the next `strata up`).
    """
    check_bounds(app, wanted or Bounds())
    data_dir = settings.data_dir.resolve()
    with exclusive(data_dir):  # not while a `strata up` deploys the config, or another `strata scale` records
        records = load_scale(data_dir)
        if wanted is None:
            records.pop(app, None)
        else:
            merged = wanted.merged_over(records.get(app))
            if merged.min is not None and merged.max is not None and merged.min > merged.max:
                raise ScaleRefused(
                    f"--min {merged.min} is above {app}'s max of {merged.max} (recorded earlier); give --max too"
                )
            records[app] = merged
        state = State.load(data_dir)
        runtime = resolve(settings, state, create=False)
        tls = ensure_certificate(runtime.settings) if runtime.settings.ingress == "python" else None
        config = _serve.serve_config(runtime.settings, tls=tls, scale=records)
        _check_fixed_size(config, app, records.get(app))
        save_scale(data_dir, records)
        bounds = deployment_bounds(config, app)
        # A local head this data dir did not start (or that died) is not ours to deploy to, whatever answers its port.
        ours = not settings.local_ray or running(state.components.get(RayHeadComponent.name))
        if not ours or app not in _serve.applications(runtime.dashboard_url, runtime.ray_auth_token):
            return bounds, False
        if settings.local_ray:
            # As `strata up` deploys it: each app pointed at its own component's secrets (a local head's workers
            # read them from this data dir); without them every replica would restart holding no credentials.
            credentials = write_credentials(runtime.settings)
            config = _serve.serve_config(runtime.settings, tls=tls, scale=records, credentials=credentials)
        _serve.deploy(runtime.dashboard_url, config, runtime.ray_auth_token)
        _wait_applied(runtime.dashboard_url, runtime.ray_auth_token, app, bounds, runtime.settings.startup_timeout_s)
        return bounds, True


def _check_fixed_size(config: dict[str, Any], app: str, bounds: Bounds | None) -> None:
    """A fixed-size app (``num_replicas``, no autoscaling) has a count, not a range: refuse min != max for it."""
    entry = next(a for a in config["applications"] if a["name"] == app)
    fixed = all("autoscaling_config" not in d for d in entry.get("deployments", []))
    if fixed and bounds is not None and (bounds.min is None or bounds.min != bounds.max):
        raise ScaleRefused(f"{app} runs a fixed number of replicas, not a range: give --replicas N")


def _wait_applied(
    dashboard_url: str, token: str | None, app: str, bounds: dict[str, dict[str, int]], timeout: float
) -> None:
    """Until the app is RUNNING with the new bounds in its deployments' live config (right after the deploy the
    dashboard may still show the app RUNNING as it was)."""
    deadline = time.monotonic() + timeout
    while True:
        _serve.wait_running(dashboard_url, token, [app], max(1.0, deadline - time.monotonic()))
        live = _serve.application_details(dashboard_url, token).get(app, {}).get("deployments") or {}
        if all(_live_bounds(live.get(name, {})) == (b["min"], b["max"]) for name, b in bounds.items()):
            return
        if time.monotonic() >= deadline:
            raise StartupError(f"{app} is running but does not show the new bounds after {timeout:.0f}s")
        time.sleep(0.5)


def _live_bounds(deployment: dict[str, Any]) -> tuple[int | None, int | None]:
    config = deployment.get("deployment_config") or {}
    autoscaling = config.get("autoscaling_config")
    if isinstance(autoscaling, dict):
        return autoscaling.get("min_replicas"), autoscaling.get("max_replicas")
    return config.get("num_replicas"), config.get("num_replicas")


def scale_command(
    app: Annotated[str, typer.Argument(help="The Serve app: gateway, auth, users, data or audit.")],
    low: Annotated[int | None, typer.Option("--min", help="Fewest replicas of each of its deployments.")] = None,
    high: Annotated[int | None, typer.Option("--max", help="Most replicas of each autoscaling deployment.")] = None,
    replicas: Annotated[int | None, typer.Option("--replicas", help="Exactly N: --min N --max N.")] = None,
    reset: Annotated[
        bool, typer.Option("--reset", help="Drop the recorded bounds: serve.yaml's and the settings' apply again.")
    ] = False,
) -> None:
    """Change an app's replica bounds on the running system, without a restart; `strata up` keeps them."""
    wanted = requested_bounds(low=low, high=high, replicas=replicas, reset=reset)
    bounds, applied = scale(Settings(), app, wanted)
    typer.echo(scale_report(app, bounds, applied=applied, reset=wanted is None))


def scale_report(app: str, bounds: dict[str, dict[str, int]], *, applied: bool, reset: bool) -> str:
    """The one line `strata scale` prints: the app's bounds now, and whether the running system has them."""
    shown = ", ".join(f"{name} {b['min']}..{b['max']}" for name, b in bounds.items()) + " replicas"
    dropped = "record dropped; " if reset else ""
    if applied:
        return f"{app}: {dropped}{shown}, running"
    return f"{app}: {dropped}{shown} recorded; applied at the next `strata up` (strata is not running)"
