"""The gateway's request metrics, exported to Prometheus by Ray's metrics agent.

Two series per (route template, method, status):

- ``strata_http_requests`` (Counter; Prometheus: ``ray_strata_http_requests_total``)
- ``strata_http_request_duration_seconds`` (Histogram; ``ray_strata_http_request_duration_seconds_bucket`` /
  ``_sum`` / ``_count``), buckets from 5 ms to 10 s with one at 200 ms, the target p99.

Labels stay few and bounded: ``route`` is the template (``/v1/users/{user_id}``)
or ``unmatched``, never the raw path; ``method`` is one of the HTTP methods the
API knows, else ``OTHER``. Recording is a local call into Ray's metrics library
(aggregated in-process and pushed to the node's agent every few seconds), so it
costs no Ray call on the request path.
"""

from __future__ import annotations

from typing import Protocol

LATENCY_BUCKETS_S: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"


class RequestRecorder(Protocol):
    """Where the edge middleware reports each request (Ray's metrics in a replica; a list in unit tests)."""

    def record(self, route: str, method: str, status: int, duration_s: float) -> None: ...


class RequestMetrics:
    """Ray metrics of the gateway's requests; create one per replica (inside the Ray worker)."""

    __slots__ = ("_latency", "_requests")

    def __init__(self) -> None:
        from ray.util.metrics import Counter, Histogram  # only inside a Ray worker

        tags = ("route", "method", "status")
        self._requests = Counter(
            "strata_http_requests", description="HTTP requests answered by the gateway.", tag_keys=tags
        )
        self._latency = Histogram(
            "strata_http_request_duration_seconds",
            description="Time from a request's arrival at the gateway to its answer, seconds.",
            boundaries=list(LATENCY_BUCKETS_S),
            tag_keys=tags,
        )

    def record(self, route: str, method: str, status: int, duration_s: float) -> None:
        tags = {"route": route, "method": method if method in KNOWN_METHODS else "OTHER", "status": str(status)}
        self._requests.inc(1.0, tags=tags)
        self._latency.observe(duration_s, tags=tags)
