"""Running wrk and reading its numbers.

Each scenario script (``benchmarks/scripts/*.lua``) ends its run by printing one line,
``BENCH_JSON {...}``, with wrk's own counters, the responses that were not 2xx by status code,
and latency percentiles (microseconds);
:func:`parse_wrk_output` turns that line into a :class:`WrkResult`. wrk's human-readable
report is kept only for the log.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SCRIPTS_DIR = Path(__file__).parent / "scripts"
MARKER = "BENCH_JSON "


class WrkError(RuntimeError):
    """wrk is missing, failed, or printed no result line."""


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: throughput, latency percentiles and errors."""

    requests: int
    duration_s: float
    latency_ms: dict[str, float]  # min, mean, stdev, p50, p75, p90, p99, p999, max
    errors: dict[str, int]  # socket errors (connect, read, write, timeout) and http (responses that are not 2xx)
    statuses: dict[str, int]  # the responses that are not 2xx, by status code

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def error_count(self) -> int:
        """Responses that are not 2xx plus socket errors."""
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rps": round(self.rps, 1), "error_count": self.error_count}


def parse_wrk_output(stdout: str) -> WrkResult:
    """The :class:`WrkResult` of a run, from the ``BENCH_JSON`` line its script printed."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARKER):
            raw = json.loads(line[len(MARKER) :])
            break
    else:
        raise WrkError("wrk printed no BENCH_JSON line (did the Lua script's done() run?)")
    latency = {name: round(float(value) / 1000.0, 3) for name, value in raw["latency_us"].items()}
    wrk_errors = {name: int(value) for name, value in raw["errors"].items()}
    statuses = {str(code): int(count) for code, count in raw.get("statuses", {}).items()}
    errors = {name: wrk_errors.get(name, 0) for name in ("connect", "read", "write", "timeout")}
    # The scripts count every response that is not 2xx; without that count, wrk's own (status >= 400) stands in.
    errors["http"] = sum(statuses.values()) if "statuses" in raw else wrk_errors.get("status", 0)
    return WrkResult(
        requests=int(raw["requests"]),
        duration_s=float(raw["duration_us"]) / 1e6,
        latency_ms=latency,
        errors=errors,
        statuses=dict(sorted(statuses.items())),
    )


def find_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise WrkError("wrk is not installed: `make bench` installs it (apt-get install wrk), or install it yourself")
    return path


def wrk_version() -> str:
    """wrk's version as it reports it (``wrk 4.2.0 [epoll] ...`` -> ``4.2.0``)."""
    result = subprocess.run([find_wrk(), "-v"], capture_output=True, text=True, timeout=10, check=False)
    words = (result.stdout or result.stderr).split()
    return words[1] if len(words) > 1 and words[0] == "wrk" else "?"


@dataclass(frozen=True)
class WrkRun:
    """What one wrk invocation produced: its parsed result, its CPU seconds and its raw report."""

    result: WrkResult
    cpu_s: float
    report: str


def run_wrk(
    url: str,
    script: str,
    *,
    connections: int,
    threads: int,
    duration_s: float,
    timeout_s: float,
    env: dict[str, str] | None = None,
) -> WrkRun:
    """Run wrk for ``duration_s`` against ``url`` with ``scripts/<script>.lua``; bounded by a hard timeout."""
    command = [
        find_wrk(),
        f"-t{max(1, min(threads, connections))}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={max(1, round(timeout_s))}s",
        "--latency",
        "-s",
        str(SCRIPTS_DIR / f"{script}.lua"),
        url,
    ]
    run_env = {**os.environ, **(env or {}), "BENCH_LUA_DIR": str(SCRIPTS_DIR)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=run_env,
            timeout=duration_s + timeout_s + 30,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"wrk did not finish within {duration_s + timeout_s + 30:.0f}s") from exc
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise WrkError(f"wrk exited with {done.returncode}: {done.stderr.strip()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return WrkRun(parse_wrk_output(done.stdout), round(cpu, 2), done.stdout)
