"""What strata started, recorded under the data dir, so `down` stops exactly that.

``<data_dir>/state.json`` maps each component to the processes strata started
for it (pid and process start time, so a recycled pid is never mistaken for
ours) and the ports it chose once and keeps for later starts.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Collection, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil


@dataclass
class Proc:
    """A process strata started: its pid and its start time (to recognise pid reuse)."""

    pid: int
    create_time: float

    @classmethod
    def of(cls, pid: int) -> Proc:
        return cls(pid, psutil.Process(pid).create_time())

    def alive(self) -> bool:
        try:
            proc = psutil.Process(self.pid)
            return abs(proc.create_time() - self.create_time) < 1.0 and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


@dataclass
class Recorded:
    """One entry of ``state.json``: what strata started for a component (its processes) and where it listens."""

    name: str
    address: str = ""
    procs: list[Proc] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def alive(self) -> bool:
        """Every recorded process still runs (a component missing one is stale: stop the rest, start anew)."""
        return bool(self.procs) and all(p.alive() for p in self.procs)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]


@dataclass
class State:
    """The contents of ``state.json``."""

    ports: dict[str, int] = field(default_factory=dict)
    components: dict[str, Recorded] = field(default_factory=dict)

    @classmethod
    def load(cls, data_dir: Path) -> State:
        path = data_dir / "state.json"
        if not path.exists():
            return cls()
        try:
            raw = json.loads(path.read_text())
            components = {
                name: Recorded(
                    name=name,
                    address=c.get("address", ""),
                    procs=[Proc(**p) for p in c.get("procs", [])],
                    extra=c.get("extra", {}),
                )
                for name, c in raw.get("components", {}).items()
            }
            return cls(ports={k: int(v) for k, v in raw.get("ports", {}).items()}, components=components)
        except (ValueError, TypeError, KeyError):
            # A state file torn by a crash: start from what can be seen.
            return cls()

    def save(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / "state.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {"ports": self.ports, "components": {k: asdict(v) for k, v in self.components.items()}}, indent=2
            )
        )
        os.replace(tmp, path)

    def port(self, name: str, configured: int, *, besides: Iterable[int] = ()) -> int:
        """``configured`` if set, else the port chosen for ``name`` earlier, else a free one (remembered).

        A free port is none of those already chosen here nor of ``besides`` (ports configured elsewhere): the
        servers bind theirs only when they start, so until then a port nobody listens on may still be promised.
        """
        if configured:
            self.ports[name] = configured
            return configured
        if name not in self.ports:
            self.ports[name] = free_port(taken={*self.ports.values(), *besides})
        return self.ports[name]


def running_any(state: State) -> bool:
    """Whether any process recorded in ``state`` still runs."""
    return any(p.alive() for recorded in state.components.values() for p in recorded.procs)


# Ports strata picks for itself lie between Ray's worker ports (10002-19999 by default) and the kernel's ephemeral
# range, which every outgoing connection and every port-0 bind (Ray's own gRPC servers among them) draws from: a
# port chosen from the ephemeral range can be taken by someone's client socket between the choice and the bind.
_OWN_PORTS_FROM = 20000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def ephemeral_ports() -> range:
    """The kernel's ephemeral port range (Linux's default where it cannot be read)."""
    try:
        low, high = (int(part) for part in _EPHEMERAL_RANGE.read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


def free_port(taken: Collection[int] = ()) -> int:
    """A loopback TCP port nobody listens on and not in ``taken``, outside the ephemeral range when there is room
    below it.

    Chosen at random, so two callers choosing at once rarely meet; the caller binds it soon after. ``taken`` holds
    the ports already promised to servers that have not bound them yet (two of them once met on the same port).
    """
    ephemeral = ephemeral_ports()
    candidates = range(_OWN_PORTS_FROM, ephemeral.start) if ephemeral.start - _OWN_PORTS_FROM >= 1000 else range(0)
    for _ in range(100):
        if not candidates:
            break
        port = secrets.choice(candidates)
        if port not in taken and not port_in_use("127.0.0.1", port):
            return port
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in taken:
            return port
    raise OSError("no free loopback port")


def port_in_use(host: str, port: int) -> bool:
    """Whether something listens on ``host:port`` (or the port cannot be bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def answers(host: str, port: int, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``host:port`` is accepted within ``timeout``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def server_env() -> dict[str, str]:
    """The environment of a server strata starts (PostgreSQL, Kafka, the TLS front): this process's, less strata's
    settings and Ray's credentials. None of them reads either, and they may hold secrets (``STRATA_SECRET_KEY``,
    the Ray token the ``strata`` command puts in its own environment), which PostgreSQL, running as another OS user,
    must not be able to read from its ``/proc/<pid>/environ``."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("STRATA_", "RAY_AUTH"))}


def spawn_detached(command: list[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own session (it outlives this process), its output appended to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=cwd,
            env=server_env(),
        )


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
            return True
        time.sleep(0.2)
    return False


@contextlib.contextmanager
def exclusive(data_dir: Path) -> Iterator[None]:
    """Hold ``<data_dir>/lock`` so two `strata up`/`down` never run at once on one data dir."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def terminate(procs: list[Proc], timeout: float = 20.0) -> None:
    """SIGTERM the live ones of ``procs`` (and their children), then SIGKILL what is left after ``timeout``."""
    targets: list[psutil.Process] = []
    for p in procs:
        if not p.alive():
            continue
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(p.pid)
            targets.extend(proc.children(recursive=True))
            targets.append(proc)
    for proc in targets:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(targets, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)
