"""A local Ray head started with ``ray start --head``, and finding exactly its processes again.

Ray's processes are found by the private temp dir strata gives the head
(``--temp-dir``): every process of that head names it on its command line, so
`strata down` stops those and nothing else on the machine.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import psutil

from strata.cluster._errors import StartupError
from strata.cluster._state import Proc


def ray_executable() -> str:
    """The ``ray`` CLI installed beside this interpreter (the project's virtualenv)."""
    candidate = Path(sys.executable).parent / "ray"
    return str(candidate) if candidate.exists() else "ray"


def temp_dir_for(data_dir: Path) -> Path:
    """A short, per-data-dir temp dir: Ray's Unix socket paths must stay under ~100 characters."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"strata-ray-{digest}"


def haproxy_socket_dir(data_dir: Path) -> Path:
    """Where Serve's HAProxy puts its Unix sockets. HAProxy allows socket paths of at most 97 characters and
    Serve adds a 56-character node id, so this sits directly under /tmp with a short name.

    Its admin socket is mode 666 at HAProxy's admin level (it can disable servers, change weights, read the
    stats): the directory, not the socket, keeps other local users out (:func:`ensure_private_dir`)."""
    return Path("/tmp") / f"strata-hap-{temp_dir_for(data_dir).name.removeprefix('strata-ray-')}"


def ensure_private_dir(path: Path) -> Path:
    """``path`` as a directory only this user may enter: created with mode 0700 if missing; refused with a
    :class:`StartupError` if it is a link or not a directory, belongs to another user or lets anyone else in
    (one made in a shared /tmp by someone else, before strata, could hand them what strata puts there)."""
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise StartupError(
            f"{path} must be a directory of this user's, not a link or a file: remove it and start again"
        )
    if info.st_uid != os.geteuid():
        raise StartupError(
            f"{path} belongs to uid {info.st_uid}, not to this user (uid {os.geteuid()}): strata keeps Serve's"
            " HAProxy admin socket there and will not use a directory another user controls; remove it (as that"
            " user or root) and start again"
        )
    if info.st_mode & 0o077:
        raise StartupError(
            f"{path} is mode {stat.S_IMODE(info.st_mode):04o}, open to other users: strata keeps Serve's HAProxy"
            " admin socket there only in a directory of mode 0700; remove it (`strata down` does) and start again"
        )
    return path


def _is_worker(cmdline: list[str]) -> bool:
    return any("default_worker.py" in part for part in cmdline) or bool(cmdline and cmdline[0].startswith("ray::"))


def _names_gcs(cmdline: list[str], gcs_port: int | None) -> bool:
    # Ray's client server names no temp dir, only the GCS address it serves (--address=<ip>:<port>).
    if gcs_port is None:
        return False
    suffix = f":{gcs_port}"
    return any(
        part.startswith(("--address=", "--gcs-address=", "--gcs_address=")) and part.endswith(suffix)
        for part in cmdline
    )


_REPLICA_TITLE = "ray::ServeReplica:"


def serve_replica_apps(procs: list[Proc]) -> set[str]:
    """The Serve apps with a replica still running among ``procs`` and their descendants (a replica's process is
    titled ``ray::ServeReplica:<app>:<deployment>``)."""
    apps: set[str] = set()
    for p in procs:
        try:
            root = psutil.Process(p.pid)
            family = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for proc in family:
            try:
                title = (proc.cmdline() or [""])[0]
            except psutil.Error:
                continue
            if title.startswith(_REPLICA_TITLE):
                apps.add(title.removeprefix(_REPLICA_TITLE).split(":")[0])
    return apps


def find_processes(temp_dir: Path, *, gcs_port: int | None = None, daemons_only: bool = False) -> list[Proc]:
    """Every live process of the head: those whose command line names ``temp_dir`` or its GCS port;
    unless ``daemons_only``, its workers too (which come and go on their own)."""
    marker = str(temp_dir)
    found: list[Proc] = []
    for proc in psutil.process_iter(["pid", "cmdline", "create_time"]):
        try:
            cmdline = proc.info["cmdline"] or []
        except psutil.Error:
            continue
        if proc.pid == os.getpid():
            continue
        if not any(marker in part for part in cmdline) and not _names_gcs(cmdline, gcs_port):
            continue
        if daemons_only and _is_worker(cmdline):
            continue
        found.append(Proc(proc.pid, proc.info["create_time"]))
    return found


class LocalRayHead:
    """Start and stop one local Ray head."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int,
        dashboard_port: int,
        agent_port: int,
        client_server_port: int,
        object_store_mb: int,
        metrics_port: int = 0,
    ) -> None:
        self.temp_dir = temp_dir_for(data_dir)
        self.log = data_dir.resolve() / "ray-start.log"
        self.port = port
        self.dashboard_port = dashboard_port
        self.agent_port = agent_port
        self.client_server_port = client_server_port
        self.object_store_mb = object_store_mb
        self.metrics_port = metrics_port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def start(self, env: Mapping[str, str], timeout: float = 120.0) -> list[Proc]:
        """``ray start --head`` with ``env`` (the STRATA_* settings every worker inherits); returns its processes."""
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        command = [
            ray_executable(),
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={self.port}",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            f"--dashboard-agent-listen-port={self.agent_port}",
            f"--ray-client-server-port={self.client_server_port}",
            f"--object-store-memory={self.object_store_mb * 1024 * 1024}",
            *([f"--metrics-export-port={self.metrics_port}"] if self.metrics_port else []),
            f"--temp-dir={self.temp_dir}",
            "--disable-usage-stats",
        ]
        with open(self.log, "ab") as log:
            try:
                result = subprocess.run(
                    command,
                    env=dict(env),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    timeout=timeout,
                    check=False,
                    start_new_session=True,
                )
            except subprocess.TimeoutExpired as exc:
                raise StartupError(f"`ray start --head` did not finish within {timeout:.0f}s (see {self.log})") from exc
        if result.returncode != 0:
            raise StartupError(f"`ray start --head` failed with exit {result.returncode} (see {self.log})")
        time.sleep(0.5)
        procs = find_processes(self.temp_dir, gcs_port=self.port, daemons_only=True)
        if not procs:
            raise StartupError(f"Ray started but none of its processes can be found (see {self.log})")
        return procs
