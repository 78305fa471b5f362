"""The systems under test: strata (HAProxy ingress, or Serve's Python proxy) and the two peers.

Each target is a context manager that starts the system in a private temp dir on free loopback
ports, yields an :class:`Endpoint` (base URL, bearer tokens of users that exist in it, the process
names to profile), and stops everything it started on the way out, also on error or Ctrl-C.
Only one target runs at a time: the machine's cores belong to the system being measured.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
Log = Callable[[str], None]


class TargetError(RuntimeError):
    """A target did not start, or its routes do not answer as the scenarios expect."""


@dataclass(frozen=True)
class StrataSystem:
    """What the read scenarios need of a running strata beyond its URL: the settings it was started with (to stop and
    start its standby as one component), the admin DSN of its primary (to see replication) and where Ray exports its
    metrics (strata's count of reads by where they ran)."""

    settings: Any
    """The :class:`strata.schemas.Settings` given to ``up()``."""
    admin_dsn: str
    metrics_url: str


@dataclass
class Endpoint:
    """A running target, as the scenarios see it."""

    base_url: str
    tokens: list[str]
    profile_processes: list[str] = field(default_factory=list)
    """Substrings of the command lines of the processes worth profiling (e.g. ``ServeReplica:gateway``)."""
    process_root: str | None = None
    """What the command line of the target's root processes contains (its Ray temp dir): the processes to profile
    are among their descendants."""
    owned_markers: list[str] = field(default_factory=list)
    """Strings naming the target in its processes' command lines (data dirs, temp dirs, modules): those processes
    and their descendants are the target's when CPU is counted."""
    verify: Any = True
    """What an HTTP client of ``base_url`` verifies TLS with (strata's local CA for strata, nothing to verify for the
    peers' plain HTTP)."""
    strata: StrataSystem | None = None
    """Set for strata's targets only: the read scenarios run where it is."""


@dataclass(frozen=True)
class TargetSpec:
    name: str
    label: str
    start: Callable[[BenchContext], contextlib.AbstractContextManager[Endpoint]]


@dataclass
class BenchContext:
    """What targets share within one run: options, a log, and the peers' database (started on first use)."""

    users: int
    start_timeout_s: float
    log: Log
    stack: contextlib.ExitStack
    _peer_db: PeerDatabase | None = None

    def peer_db(self) -> PeerDatabase:
        if self._peer_db is None:
            self._peer_db = self.stack.enter_context(peer_database(self.users, self.log, self.start_timeout_s))
        return self._peer_db


def _wait_healthy(url: str, timeout_s: float, proc: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise TargetError(f"the process serving {url} exited with {proc.returncode}")
        try:
            response = httpx.get(url, verify=False, timeout=3)  # loopback liveness check only
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.5)
    raise TargetError(f"{url} did not answer 200 within {timeout_s:.0f}s (last: {last})")


def _check_me(base_url: str, tokens: list[str], verify: Any) -> None:
    """Each token reads its profile once (strata creates a profile on the first read), and must get 200."""
    with httpx.Client(base_url=base_url, verify=verify, timeout=30) as client:
        for token in tokens:
            response = client.get("/v1/users/me", headers={"Authorization": f"Bearer {token}"})
            if response.status_code != 200:
                raise TargetError(f"GET /v1/users/me answered {response.status_code}: {response.text[:300]}")


def _clean_env() -> dict[str, str]:
    """This process's environment without Ray's and strata's variables (each target sets its own)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "STRATA_"))}


# --- strata -----------------------------------------------------------------------------------------


def _strata_settings(data_dir: Path, ingress: str, start_timeout_s: float) -> Any:
    from strata.cluster._state import free_port
    from strata.schemas import Settings

    values: dict[str, Any] = {
        "data_dir": data_dir,
        "ingress": ingress,
        "gateway_port": free_port(),
        "serve_port": free_port(),
        "haproxy_stats_port": free_port(),
        "haproxy_metrics_port": free_port(),
        "ray_dashboard_port": free_port(),
        "startup_timeout_s": start_timeout_s,
        # Long enough for the whole `me` scenario; token lifetime does not change the request path's cost.
        "access_token_ttl_s": 3600,
        # Limits far above what one load generator sends: the rate limiter stays on the request path (its
        # leases are taken as usual) but rejects nothing, so the numbers are the path's, not the policy's.
        "rate_limit_read": "10000000/60s",
        "rate_limit_auth": "1000/60s",
    }
    return Settings(_env_file=None, **values)


def _register_strata_users(base_url: str, verify: Any, count: int, log: Log) -> list[str]:
    """Register ``count`` accounts and log each in through the public API; returns their access tokens."""
    tokens: list[str] = []
    with httpx.Client(base_url=base_url, verify=verify, timeout=30) as client:
        for _ in range(count):
            email = f"bench-{uuid.uuid4().hex[:12]}@example.com"
            password = f"Bench-{secrets.token_urlsafe(18)}"
            post_json(client, "/v1/auth/register", {"email": email, "password": password}, 201)
            login = post_json(client, "/v1/auth/login", {"email": email, "password": password}, 200)
            tokens.append(login["access_token"])
    log(f"  registered and logged in {count} users")
    return tokens


def post_json(
    client: httpx.Client,
    path: str,
    body: Any,
    expected: int,
    *,
    headers: dict[str, str] | None = None,
    patience_s: float = 90,
) -> Any:
    """POST ``body`` as JSON and return the answer's JSON, waiting out 429/503 (their ``Retry-After``) for at most
    ``patience_s``; any other status than ``expected`` is a :class:`TargetError`."""
    deadline = time.monotonic() + patience_s
    while True:
        response = client.post(path, json=body, headers=headers)
        if response.status_code == expected:
            return response.json()
        if response.status_code in (429, 503) and time.monotonic() < deadline:
            time.sleep(min(float(response.headers.get("Retry-After", "1") or 1), 10))
            continue
        raise TargetError(f"POST {path} answered {response.status_code}: {response.text[:300]}")


@contextlib.contextmanager
def strata_target(ingress: str, ctx: BenchContext) -> Iterator[Endpoint]:
    """strata with every component (PostgreSQL, Kafka, Ray, the Serve apps), started as `strata up` does."""
    from strata.cluster import down, up
    from strata.cluster._ray import temp_dir_for
    from strata.cluster._status import status_metrics_url

    data_dir = Path(tempfile.mkdtemp(prefix=f"strata-bench-{ingress}-"))
    settings = _strata_settings(data_dir, ingress, ctx.start_timeout_s)
    failed = True
    try:
        ctx.log(f"  strata up (ingress={ingress}, data dir {data_dir})")
        runtime = up(
            settings,
            echo=lambda line: ctx.log(f"    {line}"),
            owner=os.getpid(),
            throwaway=True,
            started_by="benchmark",
        )
        ca = getattr(runtime, "ca_file", None)
        verify: Any = True  # plain HTTP, or a certificate the system trusts
        if ca is not None and Path(ca).exists():
            import ssl

            verify = ssl.create_default_context(cafile=str(ca))  # strata's local CA (<data_dir>/tls/ca.pem)
        _wait_healthy(runtime.gateway_url + "/healthz", ctx.start_timeout_s)
        tokens = _register_strata_users(runtime.gateway_url, verify, ctx.users, ctx.log)
        _check_me(runtime.gateway_url, tokens, verify)
        processes = ["ServeReplica:gateway", "ServeReplica:users"]
        if ingress == "python":
            processes.append("ProxyActor")
        ray_dir = str(temp_dir_for(settings.data_dir))
        database_url = runtime.settings.database_url
        system = StrataSystem(
            settings, database_url.get_secret_value() if database_url else "", status_metrics_url(settings)
        )
        yield Endpoint(
            runtime.gateway_url,
            tokens,
            processes,
            ray_dir,
            [str(data_dir.resolve()), ray_dir],
            verify=verify,
            strata=system,
        )
        failed = False
    finally:
        ctx.log("  strata down")
        try:
            down(settings, echo=lambda line: ctx.log(f"    {line}"))
        finally:
            if failed:  # its logs tell why: PostgreSQL's, Kafka's and Ray's (Serve's under <temp dir>/session_latest)
                ctx.log(f"  strata failed: its data dir {data_dir} and Ray dir {temp_dir_for(data_dir)} are kept")
            else:
                shutil.rmtree(temp_dir_for(settings.data_dir), ignore_errors=True)
                shutil.rmtree(data_dir, ignore_errors=True)


# --- the peers' database ------------------------------------------------------------------------------


@dataclass
class PeerDatabase:
    """An embedded PostgreSQL with the peers' profiles table, its users, and tokens signed for them."""

    dsn: str
    public_key_pem: str
    tokens: list[str]
    home: str


@contextlib.contextmanager
def peer_database(users: int, log: Log, timeout_s: float) -> Iterator[PeerDatabase]:
    """strata's embedded PostgreSQL (same server and configuration), in its own temp dir, for the peers."""
    import asyncio

    import asyncpg
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from benchmarks.peer._common import ALGORITHM, AUDIENCE, ISSUER, SCHEMA_SQL
    from strata.cluster._postgres import EmbeddedPostgres
    from strata.cluster._state import free_port, terminate

    home = Path(tempfile.mkdtemp(prefix="strata-bench-peerdb-"))
    pg = EmbeddedPostgres(home / "postgres", port=free_port(), admin_password=secrets.token_urlsafe(24))
    proc = None
    try:
        log(f"  starting the peers' PostgreSQL on {pg.address}")
        pg.init()
        proc = pg.start(timeout=timeout_s)
        asyncio.run(pg.ensure_database())
        user_ids = [str(uuid.uuid4()) for _ in range(users)]

        async def seed() -> None:
            conn = await asyncpg.connect(pg.dsn, timeout=10)
            try:
                await conn.execute(SCHEMA_SQL)
                await conn.executemany(
                    "INSERT INTO peer_profiles (user_id, email) VALUES ($1, $2)",
                    [(uid, f"bench-{uid[:8]}@example.com") for uid in user_ids],
                )
            finally:
                await conn.close()

        asyncio.run(seed())
        key = Ed25519PrivateKey.generate()
        public_pem = (
            key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )
        now = int(time.time())
        tokens = [
            jwt.encode(
                {"sub": uid, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 3600},
                key,
                algorithm=ALGORITHM,
                headers={"kid": "bench"},
            )
            for uid in user_ids
        ]
        yield PeerDatabase(pg.dsn, public_pem, tokens, str(home.resolve()))
    finally:
        log("  stopping the peers' PostgreSQL")
        try:
            pg.stop()
        finally:
            if proc is not None:
                terminate([proc], timeout=10)
            shutil.rmtree(home, ignore_errors=True)


def _peer_env(db: PeerDatabase) -> dict[str, str]:
    return {
        **_clean_env(),
        "PEER_DSN": db.dsn,
        "PEER_JWT_PUBLIC_KEY": db.public_key_pem,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")])),
    }


def _stop_process_group(proc: subprocess.Popen[Any], timeout_s: float, *, gentle: bool = False) -> None:
    """Stop a process started in its own session: ``gentle``, SIGINT it alone first (so it shuts down what it
    started); then SIGTERM its whole group, and SIGKILL the group after ``timeout_s``."""
    if gentle and proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)  # the group may outlive its leader
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _keep_log_on_failure(path: Path, failed: bool, log: Log) -> None:
    if failed:
        log(f"  the target failed: its log is kept at {path}")
    else:
        path.unlink(missing_ok=True)


# --- peer 1: FastAPI + uvicorn monolith ------------------------------------------------------------------


@contextlib.contextmanager
def monolith_target(ctx: BenchContext) -> Iterator[Endpoint]:
    from strata.cluster._state import free_port

    db = ctx.peer_db()
    port = free_port()
    workers = os.cpu_count() or 1
    log_path = Path(tempfile.mkstemp(prefix="strata-bench-monolith-", suffix=".log")[1])
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "benchmarks.peer.monolith:app",
        "--host=127.0.0.1",
        f"--port={port}",
        f"--workers={workers}",
        "--no-access-log",
        "--log-level=warning",
    ]
    ctx.log(f"  uvicorn with {workers} workers on 127.0.0.1:{port}")
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            command, cwd=REPO, env=_peer_env(db), stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    failed = True
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url + "/healthz", ctx.start_timeout_s, proc)
        _check_me(url, db.tokens, True)
        yield Endpoint(url, db.tokens, owned_markers=["benchmarks.peer.monolith:app", db.home])
        failed = False
    finally:
        _stop_process_group(proc, timeout_s=20)
        _keep_log_on_failure(log_path, failed, ctx.log)


# --- peer 2: the obvious Ray Serve build ------------------------------------------------------------


@contextlib.contextmanager
def serve_peer_target(ctx: BenchContext) -> Iterator[Endpoint]:
    from strata.cluster._ray import find_processes
    from strata.cluster._state import free_port, terminate

    db = ctx.peer_db()
    port = free_port()
    # Short: Ray's Unix socket paths must stay under ~100 characters.
    temp_dir = Path(tempfile.mkdtemp(prefix="sbp-", dir="/tmp"))
    log_path = temp_dir.parent / f"{temp_dir.name}.log"
    command = [sys.executable, "-m", "benchmarks.peer.serve_app", f"--port={port}", f"--temp-dir={temp_dir}"]
    ctx.log(f"  Ray Serve peer (private local Ray in {temp_dir}) on 127.0.0.1:{port}")
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            command, cwd=REPO, env=_peer_env(db), stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    failed = True
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url + "/healthz", ctx.start_timeout_s, proc)
        _check_me(url, db.tokens, True)
        yield Endpoint(url, db.tokens, owned_markers=[str(temp_dir), "benchmarks.peer.serve_app", db.home])
        failed = False
    finally:
        _stop_process_group(proc, timeout_s=30, gentle=True)
        leftovers = find_processes(temp_dir)
        if leftovers:
            ctx.log(f"  stopping {len(leftovers)} leftover Ray processes of the peer")
            terminate(leftovers, timeout=15)
        shutil.rmtree(temp_dir, ignore_errors=True)
        _keep_log_on_failure(log_path, failed, ctx.log)


TARGETS: dict[str, TargetSpec] = {
    spec.name: spec
    for spec in (
        TargetSpec("strata-haproxy", "strata (HAProxy ingress, TLS front)", lambda ctx: strata_target("haproxy", ctx)),
        TargetSpec("strata-python", "strata (Serve Python proxy)", lambda ctx: strata_target("python", ctx)),
        TargetSpec("peer-fastapi", "peer: FastAPI + uvicorn monolith", monolith_target),
        TargetSpec("peer-serve", "peer: Ray Serve, defaults", serve_peer_target),
    )
}
"""Every target, in the order a run measures them (strata first, then the peers, which share a database)."""
