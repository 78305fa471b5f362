"""strata's own Prometheus metrics, recorded through Ray's metrics API.

Ray exports them, prefixed ``ray_``, from each node's metrics agent (``ray start --metrics-export-port``; `strata
status` shows the local head's address), next to Ray's and Serve's own metrics: see docs/operations.md.
Outside a Ray worker (the CLI, a unit test) recording is a no-op, so the code that records needs no guard.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import ray
from ray.util import metrics

logger = logging.getLogger(__name__)

_made: dict[str, Any] = {}


def _in_ray() -> bool:
    try:
        return ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE
    except Exception:  # noqa: BLE001 - no runtime context: not in a worker
        return False


def _metric(kind: type[Any], name: str, description: str, tag_keys: Sequence[str], **options: Any) -> Any:
    metric = _made.get(name)
    if metric is None:
        metric = _made[name] = kind(name, description=description, tag_keys=tuple(tag_keys), **options)
    return metric


def set_gauge(name: str, description: str, value: float, tags: dict[str, str]) -> None:
    """Set gauge ``name`` (created on first use with ``tags``' keys) for ``tags``."""
    if not _in_ray():
        return
    try:
        _metric(metrics.Gauge, name, description, sorted(tags)).set(value, tags=tags)
    except Exception:  # a metric must never break the work it measures
        logger.debug("metric %s not recorded", name, exc_info=True)


def inc_counter(name: str, description: str, tags: dict[str, str], value: float = 1.0) -> None:
    """Add ``value`` to counter ``name`` for ``tags``."""
    if not _in_ray():
        return
    try:
        _metric(metrics.Counter, name, description, sorted(tags)).inc(value, tags=tags)
    except Exception:
        logger.debug("metric %s not recorded", name, exc_info=True)
