"""Replica bounds an operator set with `strata scale`, recorded under the data dir so `strata up` keeps them.

``<data_dir>/scale.json`` maps an app to the bounds given for it, ``{"data": {"min": 1, "max": 4}}``; an app's entry
holds the bounds the operator gave (one or both), merged over its earlier ones. :func:`apply_bounds` lays them over a
Serve config last, after ``serve.yaml`` and the settings (``STRATA_MIN_REPLICAS``, ``STRATA_MAX_REPLICAS``): the
operator's latest action wins.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strata.cluster._errors import ScaleRefused
from strata.schemas import app_names

SCALE_FILE = "scale.json"
MAX_REPLICAS = 64


@dataclass(frozen=True)
class Bounds:
    """Replica bounds of one app's deployments; ``None`` leaves that bound as the config below has it."""

    min: int | None = None
    max: int | None = None

    def merged_over(self, earlier: Bounds | None) -> Bounds:
        """These bounds, with the ones not given here taken from ``earlier``."""
        if earlier is None:
            return self
        return Bounds(
            self.min if self.min is not None else earlier.min,
            self.max if self.max is not None else earlier.max,
        )

    def as_dict(self) -> dict[str, int]:
        return {key: value for key, value in (("min", self.min), ("max", self.max)) if value is not None}


def check_bounds(app: str, bounds: Bounds) -> None:
    """Refuse an unknown app, a bound outside 1..64 and a minimum above the maximum, naming the values."""
    known = list(app_names())
    if app not in known:
        raise ScaleRefused(f"unknown app {app!r}; known: {', '.join(known)}")
    for name, value in (("min", bounds.min), ("max", bounds.max)):
        if value is not None and not 1 <= value <= MAX_REPLICAS:
            raise ScaleRefused(f"--{name} {value} for {app}: replicas must be between 1 and {MAX_REPLICAS}")
    if bounds.min is not None and bounds.max is not None and bounds.min > bounds.max:
        raise ScaleRefused(f"--min {bounds.min} is above --max {bounds.max} for {app}")


def load_scale(data_dir: Path) -> dict[str, Bounds]:
    """The recorded bounds (none when the file is absent); a file that is not a valid record is one clear error."""
    path = data_dir / SCALE_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ScaleRefused(f"{path} cannot be read ({exc}); fix it or remove it") from exc
    if not isinstance(raw, dict):
        raise ScaleRefused(f'{path} must map app names to bounds, such as {{"data": {{"min": 1, "max": 2}}}}')
    records: dict[str, Bounds] = {}
    for app, entry in raw.items():
        if not isinstance(entry, dict) or not set(entry) <= {"min", "max"}:
            raise ScaleRefused(f"{path}: {app!r} must be an object with min and/or max: {entry!r}")
        values = [entry.get("min"), entry.get("max")]
        if not all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in values):
            raise ScaleRefused(f"{path}: {app!r} holds bounds that are not whole numbers: {entry!r}")
        bounds = Bounds(values[0], values[1])
        try:
            check_bounds(app, bounds)
        except ScaleRefused as exc:
            raise ScaleRefused(f"{path}: {exc}") from exc
        records[app] = bounds
    return records


def save_scale(data_dir: Path, records: Mapping[str, Bounds]) -> None:
    """Write the records atomically (a temporary file renamed over the old one), mode 0600 like strata's state."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SCALE_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({app: bounds.as_dict() for app, bounds in sorted(records.items())}, handle, indent=2)
    os.replace(tmp, path)


def apply_bounds(deployment: dict[str, Any], bounds: Bounds) -> None:
    """Set one deployment's bounds from a record: the bounds given win; one given alone moves the other if it must.

    An autoscaling deployment takes ``min_replicas``/``max_replicas``; a fixed-size one (``num_replicas``) takes a
    recorded minimum as its count (`strata scale` records min = max for it).
    """
    autoscaling = deployment.get("autoscaling_config")
    if autoscaling is None:
        if bounds.min is not None:
            deployment["num_replicas"] = bounds.min
        return
    low = bounds.min if bounds.min is not None else int(autoscaling.get("min_replicas", 1))
    high = bounds.max if bounds.max is not None else int(autoscaling.get("max_replicas", low))
    if bounds.min is None:
        low = min(low, high)  # a lower ceiling given alone brings the floor down with it
    high = max(low, high)  # a higher floor given alone lifts the ceiling
    autoscaling["min_replicas"], autoscaling["max_replicas"] = low, high


def deployment_bounds(config: Mapping[str, Any], app: str) -> dict[str, dict[str, int]]:
    """``{deployment: {"min": n, "max": m}}`` of one app in a Serve config (a fixed-size one has min = max)."""
    for entry in config.get("applications", []):
        if entry["name"] != app:
            continue
        bounds: dict[str, dict[str, int]] = {}
        for deployment in entry.get("deployments", []):
            autoscaling = deployment.get("autoscaling_config")
            if autoscaling is not None:
                bounds[deployment["name"]] = {"min": autoscaling["min_replicas"], "max": autoscaling["max_replicas"]}
            elif "num_replicas" in deployment:
                bounds[deployment["name"]] = {"min": deployment["num_replicas"], "max": deployment["num_replicas"]}
        return bounds
    return {}
