"""Session fixtures: one real PostgreSQL, Kafka and Ray (with every Serve app) for the whole test session.

They are started by the same code as `strata up`, in a private data dir and on
free loopback ports, and stopped by `strata down`'s code at the end.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import ssl

# Ray reads its authentication settings once, when it is first imported: the session's cluster runs with
# token authentication (as `strata up` starts it), so this process, a Ray driver, holds the token from the start.
SESSION_RAY_TOKEN = secrets.token_hex(32)
os.environ["RAY_AUTH_MODE"] = "token"
os.environ["RAY_AUTH_TOKEN"] = SESSION_RAY_TOKEN
# A handle used after ray.shutdown() must fail, not quietly start a second, local Ray instance.
os.environ["RAY_ENABLE_AUTO_CONNECT"] = "0"
# Workers report their metrics every 2 s instead of 10 (the session's Ray head inherits this): tests that read
# strata's counters wait for the export, not for a measurement.
os.environ.setdefault("RAY_metrics_report_interval_ms", "2000")

import logging
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from strata.cluster import Runtime, down, settings_env, up
from strata.cluster._ray import temp_dir_for
from strata.cluster._state import free_port
from strata.schemas import Settings

logger = logging.getLogger("strata.tests")


@dataclass
class System:
    """The running system of this test session."""

    settings: Settings  # as configured (what an operator sets)
    runtime: Runtime  # as resolved (DSNs and addresses filled in)
    secrets: set[str] = field(default_factory=set)  # every secret the suite used: no log line may contain one

    def remember_secret(self, value: str) -> str:
        """Note ``value`` (a password, a token) so the log scan at the end looks for it; returns it."""
        self.secrets.add(value)
        return value

    @property
    def env(self) -> dict[str, str]:
        """Environment for a `strata` subprocess that must address this system."""
        return {**os.environ, **settings_env(self.settings)}

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What an HTTP client passes as ``verify`` to trust the gateway's certificate."""
        ca = self.runtime.ca_file
        return ssl.create_default_context(cafile=str(ca)) if ca is not None else True

    def client(self, **options: Any) -> httpx.Client:
        """An HTTP client of the public endpoint (``base_url`` set, TLS verified against strata's CA, 15 s timeout
        unless ``options`` say otherwise)."""
        options.setdefault("timeout", 15)
        return httpx.Client(base_url=self.runtime.gateway_url, verify=self.verify, **options)

    def async_client(self, **options: Any) -> httpx.AsyncClient:
        options.setdefault("timeout", 15)
        return httpx.AsyncClient(base_url=self.runtime.gateway_url, verify=self.verify, **options)

    def forget_client_login_failures(self) -> None:
        """Every HTTP test comes from a loopback address: forget the failed logins counted against client
        addresses, so one test's wrong passwords do not throttle the next test's logins."""

        async def forget() -> None:
            conn = await asyncpg.connect(self.admin_dsn)
            try:
                await conn.execute("DELETE FROM auth.login_failures WHERE scope = 'client'")
            finally:
                await conn.close()

        asyncio.run(forget())

    def kafka(self, component: str = "admin") -> dict[str, Any]:
        """aiokafka options of ``component``'s principal on this system's broker (the admin's by default)."""
        from strata.actors.kafka import client_options

        return client_options(self.runtime.settings, component)

    @property
    def admin_dsn(self) -> str:
        assert self.runtime.settings.database_url is not None
        return self.runtime.settings.database_url.get_secret_value()


_INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``last`` (they stop the session's system) run after all others; every test under
    ``tests/integration/`` must carry the ``integration`` marker (``-m 'not integration'`` then runs the unit tests
    alone, and a new integration file without its marker fails collection instead of hiding among them)."""
    unmarked = [
        item.nodeid
        for item in items
        if item.path.is_relative_to(_INTEGRATION_DIR) and item.get_closest_marker("integration") is None
    ]
    if unmarked:
        raise pytest.UsageError(f"integration tests without the integration marker: {unmarked[:5]}")
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    names = ("gateway_port", "serve_port", "haproxy_stats_port", "haproxy_metrics_port", "ray_dashboard_port")
    ports: list[int] = []
    for _ in names:  # servers that listen only once started: each its own port
        ports.append(free_port(taken=ports))
    values: dict[str, object] = {
        "data_dir": data_dir,
        **dict(zip(names, ports, strict=True)),
        "db_connections_per_service": 6,
        "db_pool_actors": 2,
        "db_pool_actor_connections": 4,
        "startup_timeout_s": 240.0,
        "ray_auth_token": SESSION_RAY_TOKEN,
        "outbox_relays": 2,
        "outbox_poll_interval_s": 0.5,
        "consumer_max_attempts": 3,
        "consumer_retry_backoff_s": 0.05,
        # Two replicas where tests look at balancing, health and limits shared across replicas.
        "min_replicas": {"gateway": 2, "users": 2},
        "cors_allow_origins": ["https://app.example.test"],
        "fault_injection": True,
        # Every replica log record reaches its file at once: tests read the logs (secrets scan, client errors).
        "serve_log_buffer_records": 1,
        # Limits a test exhausts in seconds from a fresh loopback address (test_rate_limits.py); 127.0.0.1, where
        # every other test comes from, is exempt so that no other test is ever refused for its pace.
        "rate_limit_auth": "20/60s",
        "rate_limit_read": "200/60s",
        "rate_limit_exempt": "127.0.0.1",
        # Refresh allowances a test exhausts in a few seconds (test_rate_limits.py), with a refill too slow to blur the
        # count on a loaded machine (one token per 72 s per session); above the 40 refreshes of a session in
        # test_refresh_races.py, whose races each take a new account.
        "refresh_rate_per_family": "50/3600s",
        "refresh_rate_per_account": "80/3600s",
        # Fewer collections' statistics per processing replica than test_autoscaling.py cycles through, so its load is
        # computed each time, not answered from the cache (test_collection_stats.py needs one entry).
        "data_stats_cache_entries": 4,
        # The CPU policy's target, for test_autoscaling.py (docs/operations.md, "Scaling on CPU"). One busy processing
        # replica reported at most 0.63-0.76 of a core here on a quiet machine (serve.yaml's 0.7 is not assured) and
        # 0.62 with one core taken by another process; an idle one reports 0.03. 0.2 is 3x under the busy figure, and
        # its scale-down band (0.16) 5x over the idle one.
        "cpu_scaling_target": 0.2,
        # A paused standby leaves read rotation after 2 s instead of 5 (test_replica_reads.py waits for it).
        "replica_max_lag_s": 2.0,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP end the session as Ctrl-C (SIGINT) does: pytest stops and tears the session's fixtures
    down, so the system stops exactly as at a normal end. Called again after ``ray.init()``, which installs its own
    SIGTERM handler (a ``sys.exit`` that pytest would count as one failed test, and go on).

    A signal that comes while the system stops is ignored, so a second SIGTERM cannot cut `down` short. SIGKILL
    cannot be caught: a system whose session was killed is stopped by the next session's `up` (or by
    `strata down --orphans`), from the per-user registry of systems and their owners.
    """

    def interrupt(signum: int, _frame: object) -> None:
        for ignored in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(ignored, signal.SIG_IGN)
        raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)


@pytest.fixture(scope="session")
def system() -> Iterator[System]:
    # Not under pytest's own temp dir: that one is private to root (0700), and the embedded PostgreSQL runs
    # as an unprivileged user when the suite runs as root.
    data_dir = Path(tempfile.mkdtemp(prefix="strata-test-"))
    settings = make_settings(data_dir)
    started = False
    stop_on_signals()
    try:
        # Owned by this process, in a throw-away data dir: if this session is killed, the next one stops it.
        runtime = up(settings, echo=logger.info, owner=os.getpid(), throwaway=True, started_by="test session")
        started = True
        yield System(settings, runtime)
    finally:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        down(settings, echo=logger.info)
        if started:
            shutil.rmtree(temp_dir_for(settings.data_dir), ignore_errors=True)  # Ray's session logs
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            # A start that fails is kept for its post-mortem: Ray's and the servers' logs say why.
            logger.error("the session's system did not start; logs kept in %s and %s", data_dir, temp_dir_for(data_dir))


@pytest.fixture(scope="session")
def ray_driver(system: System) -> Iterator[None]:
    """This process as a Ray driver of the session's cluster (namespace ``strata``)."""
    import ray

    ray.init(address=system.runtime.ray_address, namespace="strata", logging_level=logging.WARNING)
    stop_on_signals()
    yield
    # The handles tests took (Serve caches them) each run a router whose metrics task would go on pushing to a
    # controller this driver no longer reaches, and log a traceback per push onto pytest's closed streams.
    from ray.serve.context import _get_global_client

    client = _get_global_client(raise_if_no_controller_running=False)
    if client is not None:
        client.shutdown_cached_handles()
    ray.shutdown()
