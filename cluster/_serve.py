"""Deploy ``cluster/serve.yaml`` through the Ray dashboard's REST API, as ``serve deploy`` does."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import yaml

from strata.cluster._errors import StartupError
from strata.cluster._scale import Bounds, apply_bounds
from strata.cluster._tls import TlsFiles
from strata.schemas import Settings

_APPLICATIONS = "/api/serve/applications/"


def serve_config_path() -> Path:
    return Path(str(resources.files("strata.cluster") / "serve.yaml"))


def serve_config(
    settings: Settings,
    path: Path | None = None,
    tls: TlsFiles | None = None,
    scale: Mapping[str, Bounds] | None = None,
    credentials: Mapping[str, Path] | None = None,
) -> dict[str, Any]:
    """The Serve config to deploy: the file, with Serve's HTTP address and the replica bounds from the settings.

    With ``ingress=haproxy`` Serve's HAProxy listens on ``127.0.0.1:<serve_port>`` behind strata's TLS front;
    with ``ingress=python`` Serve's proxy listens on the public address and terminates TLS with ``tls``.

    Replica bounds, in order, each over the one before: the file's, ``STRATA_MIN_REPLICAS`` (a floor, lifting the
    ceiling if needed; a fixed-size deployment's count), ``STRATA_MAX_REPLICAS`` (an autoscaling deployment's ceiling,
    never below its floor), then ``scale``, what `strata scale` recorded (:mod:`strata.cluster._scale`).
    ``STRATA_CPU_SCALING_TARGET`` replaces the target of every deployment scaled by ``CpuPolicy``.

    ``credentials`` (:func:`~strata.cluster._runtime.write_credentials`) points each app at its own component's
    secrets: ``STRATA_CREDENTIALS_FILE`` in its ``runtime_env``, so its replicas and the actors they create hold
    those and no others.
    """
    config: dict[str, Any] = yaml.safe_load((path or serve_config_path()).read_text())
    for key in [k for k in config if k.startswith("x-")]:
        del config[key]  # the file's shared blocks (YAML anchors), already merged where they are used
    http = config.setdefault("http_options", {})
    if settings.ingress == "haproxy":
        http["host"] = "127.0.0.1"
        http["port"] = settings.serve_port
        for app in config["applications"]:
            if app.get("route_prefix") is not None:
                # HAProxy balances the HTTP ingress replicas itself (leastconn); Serve refuses a request router there.
                for deployment in app.get("deployments", []):
                    deployment.pop("request_router_config", None)
    else:
        http["host"] = settings.gateway_host
        http["port"] = settings.gateway_port
        if tls is not None:
            http["ssl_certfile"] = str(tls.certfile)
            http["ssl_keyfile"] = str(tls.keyfile)
    for app in config["applications"]:
        if credentials is not None and app["name"] in credentials:
            runtime_env = app.setdefault("runtime_env", {})
            runtime_env.setdefault("env_vars", {})["STRATA_CREDENTIALS_FILE"] = str(credentials[app["name"]])
        floor = settings.min_replicas.get(app["name"])
        ceiling = settings.max_replicas.get(app["name"])
        recorded = (scale or {}).get(app["name"])
        for deployment in app.get("deployments", []):
            autoscaling = deployment.get("autoscaling_config")
            if floor is not None:
                if autoscaling is not None:
                    autoscaling["min_replicas"] = floor
                    autoscaling["max_replicas"] = max(floor, autoscaling.get("max_replicas", floor))
                else:
                    deployment["num_replicas"] = floor
            if ceiling is not None and autoscaling is not None:
                autoscaling["max_replicas"] = max(autoscaling.get("min_replicas", 1), ceiling)
            if recorded is not None:
                apply_bounds(deployment, recorded)
            policy = (autoscaling or {}).get("policy") or {}
            if settings.cpu_scaling_target is not None and str(policy.get("policy_function", "")).endswith(
                ":CpuPolicy"
            ):
                policy["policy_kwargs"] = {**policy.get("policy_kwargs", {}), "target": settings.cpu_scaling_target}
    return config


def _headers(token: str | None) -> dict[str, str]:
    # Ray's token authentication (RAY_AUTH_MODE=token) guards the dashboard's REST API.
    return {"Authorization": f"Bearer {token}"} if token else {}


def deploy(dashboard_url: str, config: dict[str, Any], token: str | None, timeout: float = 30.0) -> None:
    try:
        response = httpx.put(dashboard_url + _APPLICATIONS, json=config, headers=_headers(token), timeout=timeout)
    except httpx.HTTPError as exc:
        raise StartupError(f"the Ray dashboard at {dashboard_url} did not take the Serve config: {exc}") from exc
    if response.status_code >= 300:
        # The dashboard answers a traceback: its last line says what went wrong.
        lines = [line for line in response.text.strip().splitlines() if line.strip()]
        reason = lines[-1][:500] if lines else ""
        raise StartupError(f"deploying the Serve config failed ({response.status_code}): {reason}")


def applications(dashboard_url: str, token: str | None, timeout: float = 5.0) -> dict[str, dict[str, Any]]:
    """``{app name: {"status": ..., "message": ..., "deployments": {...}}}``; empty when Serve is not running."""
    try:
        response = httpx.get(dashboard_url + _APPLICATIONS, headers=_headers(token), timeout=timeout)
        response.raise_for_status()
    except httpx.HTTPError:
        return {}
    apps = response.json().get("applications") or {}
    return {
        name: {
            "status": app.get("status", "UNKNOWN"),
            "message": app.get("message", ""),
            "deployments": {d: info.get("status", "UNKNOWN") for d, info in (app.get("deployments") or {}).items()},
        }
        for name, app in apps.items()
    }


def application_details(dashboard_url: str, token: str | None, timeout: float = 5.0) -> dict[str, dict[str, Any]]:
    """The dashboard's ``applications`` as it answers them (Serve's ``ApplicationDetails`` JSON: each deployment's
    config, ``target_num_replicas`` and replicas with state, pid and node); empty when Serve is not running."""
    try:
        response = httpx.get(dashboard_url + _APPLICATIONS, headers=_headers(token), timeout=timeout)
        response.raise_for_status()
        apps = response.json().get("applications") or {}
    except (httpx.HTTPError, ValueError):
        return {}
    return apps if isinstance(apps, dict) else {}


def wait_running(dashboard_url: str, token: str | None, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    apps: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        apps = applications(dashboard_url, token)
        failed = {n: a for n, a in apps.items() if a["status"] == "DEPLOY_FAILED"}
        if failed:
            name, app = next(iter(failed.items()))
            raise StartupError(f"Serve app {name!r} failed to deploy: {app['message'].strip().splitlines()[-1:] or ''}")
        if all(apps.get(n, {}).get("status") == "RUNNING" for n in names):
            return
        time.sleep(1.0)
    pending = {n: apps.get(n, {}).get("status", "NOT_DEPLOYED") for n in names}
    raise StartupError(f"Serve apps not running after {timeout:.0f}s: {pending}")


def ingress_apps(path: Path | None = None) -> set[str]:
    """The apps of the Serve config that take HTTP (a ``route_prefix``): the gateway."""
    config = yaml.safe_load((path or serve_config_path()).read_text())
    return {app["name"] for app in config["applications"] if app.get("route_prefix") is not None}


def shutdown(
    dashboard_url: str, token: str | None, timeout: float = 60.0, *, done: Callable[[], bool] | None = None
) -> None:
    """Delete every Serve app (and Serve's proxies), gently; errors mean Ray is gone already.

    Returns when Serve says it is done, when ``done()`` says what had to stop gently has stopped (checked every
    quarter second), or after ``timeout``. The dashboard answers nothing else while it deletes, so ``done`` looks at
    something other than the dashboard (the replicas' processes).
    """
    answered = threading.Event()

    def delete() -> None:
        try:
            httpx.delete(dashboard_url + _APPLICATIONS, headers=_headers(token), timeout=timeout)
        except httpx.HTTPError:
            pass
        finally:
            answered.set()

    # A daemon thread: what is left of the request ends with the Ray head it waits on, or with this process.
    threading.Thread(target=delete, name="serve-shutdown", daemon=True).start()
    deadline = time.monotonic() + timeout
    while not answered.wait(0.25):
        if time.monotonic() >= deadline or (done is not None and done()):
            return
