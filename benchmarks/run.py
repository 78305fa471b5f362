"""``make bench``: measure strata and its peers with wrk, one target at a time, and write the results.

For each target (strata in HAProxy mode, strata on Serve's Python proxy, the FastAPI monolith peer,
the Ray Serve peer) it starts the system, runs each scenario (``ping``, ``me``, and on strata the
read scenarios ``item-get`` and ``item-list``, with its standby on and off: see ``_reads``) at each
connection count (a short warm-up, then the measured run), records req/s, latency percentiles, errors
and CPU, optionally profiles strata's replicas with py-spy under ``me`` at the highest connection
count, and stops the system before the next one starts. Results go to ``benchmarks/results/``:
``results.json``, ``results.md``, ``<scenario>.png``, ``flame-*.svg`` and ``profile.md``.

    python -m benchmarks.run --duration 10 --targets strata-haproxy,peer-fastapi
    python -m benchmarks.run --targets strata-haproxy --scenarios item-get,item-list --duration 5
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import psutil
import typer

from benchmarks import _cpu, _profile, _reads, _report
from benchmarks._targets import REPO, TARGETS, BenchContext, Endpoint
from benchmarks._wrk import WrkError, WrkResult, find_wrk, run_wrk, wrk_version

SCENARIOS: dict[str, str] = {"ping": "/healthz", "me": "/v1/users/me"}
"""Scenario name -> the path it loads (the Lua script of the same name shapes the requests)."""
ALL_SCENARIOS = [*SCENARIOS, *_reads.READ_SCENARIOS]
"""Every scenario, in the order a run measures them; the read scenarios' requests come from ``_reads``."""


@dataclass(frozen=True)
class Load:
    """What one wrk run sends: the URL, the Lua script shaping the requests, and the script's environment."""

    url: str
    script: str
    env: dict[str, str]


def _fixed_load(endpoint: Endpoint, scenario: str) -> Load:
    return Load(endpoint.base_url + SCENARIOS[scenario], scenario, {"BENCH_TOKENS": ",".join(endpoint.tokens)})


app = typer.Typer(add_completion=False, help=__doc__)


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _log(line: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {line}", flush=True)


def _machine() -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = psutil.virtual_memory().total / 2**30
    return f"{platform.system()} {platform.release()}, {model}, {os.cpu_count()} cores, {memory:.0f} GiB"


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True, check=False
    )
    versions["strata"] = f"{metadata.version('strata')} ({commit.stdout.strip() or 'no git'})"
    for package in ("ray", "fastapi", "uvicorn", "asyncpg", "pyjwt"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    versions["wrk"] = wrk_version()
    return versions


def _warm_up(load: Load, connections: int, *, seconds: float, threads: int, timeout_s: float) -> WrkResult | None:
    """A run that is not recorded (``None`` when ``seconds`` is 0)."""
    if seconds <= 0:
        return None
    options: dict[str, Any] = {"connections": connections, "threads": threads, "timeout_s": timeout_s}
    return run_wrk(load.url, load.script, duration_s=seconds, env=load.env, **options).result


def _measure(
    endpoint: Endpoint,
    target: str,
    scenario: str,
    connections: int,
    load: Load,
    *,
    duration_s: float,
    warmup_s: float,
    threads: int,
    timeout_s: float,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A warm-up of ``warmup_s``, then one measured point (``extra`` is added to it: the standby's state, say)."""
    options: dict[str, Any] = {"connections": connections, "threads": threads, "timeout_s": timeout_s}
    _warm_up(load, connections, seconds=warmup_s, threads=threads, timeout_s=timeout_s)
    before = _cpu.snapshot(endpoint.owned_markers)
    psutil.cpu_percent(interval=None)
    started = time.monotonic()
    run = run_wrk(load.url, load.script, duration_s=duration_s, env=load.env, **options)
    elapsed = time.monotonic() - started
    machine_cpu = psutil.cpu_percent(interval=None)
    result = run.result
    groups = _cpu.cpu_by_group(before, _cpu.snapshot(endpoint.owned_markers), elapsed)
    point = {
        "target": target,
        "scenario": scenario,
        "connections": connections,
        **result.as_dict(),
        "cpu_percent": machine_cpu,
        "wrk_cpu_percent": round(run.cpu_s / max(result.duration_s, 1e-9) / (os.cpu_count() or 1) * 100, 1),
        "cpu_by_group": groups,
        **(extra or {}),
    }
    _log(
        f"  {_report.scenario_label(point):4} c={connections:<3} {result.rps:8.0f} req/s"
        f"  p50 {result.latency_ms['p50']:7.1f} ms  p99 {result.latency_ms['p99']:7.1f} ms"
        f"  errors {result.error_count}  CPU {machine_cpu:.0f}%"
    )
    return point


def _measure_reads(
    endpoint: Endpoint,
    target: str,
    scenario: str,
    bench: _reads.ReadBench,
    counts: Sequence[int],
    *,
    duration_s: float,
    warmup_s: float,
    threads: int,
    timeout_s: float,
) -> list[dict[str, Any]]:
    """A read scenario at every connection count, once per round of :data:`_reads.ABBA` (the standby on or off),
    each point with the share of its reads (its warm-up's included) that strata counted on the standby."""
    users, switch, reads = bench.users, bench.switch, bench.reads
    requests = _reads.read_requests(scenario, users)
    env = _reads.requests_env([user.token for user in users], requests)
    rotated = env["BENCH_REQUESTS"].count(",") + 1
    _log(f"  {scenario}: {rotated} requests in rotation ({len(requests)} made), standby in the order {_reads.ABBA}")
    load = Load(endpoint.base_url, "paths", env)
    points = []
    for state, round_number in _reads.rounds():
        if switch.on != (state == "on"):
            switch.turn(state == "on")
            reads.settle()  # the last run's tail is counted before the first run in the new state
        for count in counts:
            before = reads.last
            warm = _warm_up(load, count, seconds=warmup_s, threads=threads, timeout_s=timeout_s)
            if warm is not None:
                reads.sent(_reads.successes(warm))
            point = _measure(
                endpoint,
                target,
                scenario,
                count,
                load,
                duration_s=duration_s,
                warmup_s=0,
                threads=threads,
                timeout_s=timeout_s,
                extra={"standby": state, "round": round_number},
            )
            reads.sent(point["requests"] - point["errors"]["http"])
            counted, share = _reads.standby_share(before, reads.settle())
            point["reads_counted"] = counted
            point["on_standby_percent"] = share
            _log(f"    {counted} reads counted, on the standby: {'-' if share is None else f'{share:g} %'}")
            points.append(point)
    return points


def _profile_target(
    endpoint: Endpoint, target: str, connections: int, seconds: int, threads: int, timeout_s: float, out: Path
) -> str:
    """py-spy every process of ``endpoint.profile_processes`` while wrk runs ``me``; returns markdown rankings."""
    recordings: list[tuple[str, Path, subprocess.Popen[bytes]]] = []
    for marker in endpoint.profile_processes:
        for index, pid in enumerate(_profile.find_processes(marker, endpoint.process_root)):
            slug = marker.split(":", 1)[-1].replace(":", "-").lower() + (f"-{index}" if index else "")
            raw = out / f".flame-{target}-{slug}.txt"
            recordings.append((f"{marker} (pid {pid})", raw, _profile.start_recording(pid, raw, seconds)))
    if not recordings:
        return f"no process of {endpoint.profile_processes} found to profile\n"
    _log(f"  profiling {len(recordings)} processes for {seconds}s under `me` at {connections} connections")
    env = {"BENCH_TOKENS": ",".join(endpoint.tokens)}
    try:
        load = run_wrk(
            endpoint.base_url + SCENARIOS["me"],
            "me",
            connections=connections,
            threads=threads,
            duration_s=seconds + 2,
            timeout_s=timeout_s,
            env=env,
        )
    except BaseException:
        for _, raw, proc in recordings:
            proc.kill()
            proc.wait(timeout=10)
            raw.unlink(missing_ok=True)
        raise
    sections = [
        f"## {target}",
        "",
        f"Under `me` at {connections} connections ({load.result.rps:.0f} req/s while sampled; py-spy at"
        f" {_profile.RATE} Hz,"
        " non-blocking, samples of the thread holding the GIL only).",
        "",
    ]
    for name, raw, proc in recordings:
        try:
            _, stderr = proc.communicate(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
        if not raw.exists():
            sections.append(f"{name}: py-spy wrote nothing ({stderr.decode(errors='replace').strip()[-300:]})\n")
            continue
        stacks = _profile.parse_collapsed(raw.read_text())
        raw.unlink()
        ranking = _profile.rank_functions(stacks)
        if ranking.total:
            svg = out / raw.name.removeprefix(".").replace(".txt", ".svg")
            svg.write_text(_profile.flame_graph_svg(stacks, f"{target}: {name}"))
            sections.append(f"Flame graph: [{svg.name}]({svg.name})\n")
        sections.append(_profile.ranking_markdown(name, ranking, seconds * _profile.RATE))
    return "\n".join(sections)


def _reads_unavailable(endpoint: Endpoint) -> str:
    """Why the read scenarios cannot run on this target (empty: they can)."""
    if endpoint.strata is None:
        return "the peers serve `ping` and `me` only (no collections, no standby)"
    scrape = _reads.scrape_from(endpoint.strata.metrics_url) if endpoint.strata.metrics_url else None
    if scrape is None:
        return "no Ray metrics export to count its reads by"
    if not _reads.StandbySwitch(endpoint.strata, scrape, _log).available():
        return "it runs no embedded standby to stop and start (STRATA_POSTGRES_STANDBYS=0, or an external PostgreSQL)"
    return ""


def _prepare_reads(endpoint: Endpoint) -> _reads.ReadBench:
    """The users' collections and items, the standby switch (the standby in rotation) and strata's read count."""
    assert endpoint.strata is not None
    scrape = _reads.scrape_from(endpoint.strata.metrics_url)
    switch = _reads.StandbySwitch(endpoint.strata, scrape, _log)
    reads = _reads.DataReads(scrape, _log)
    users, checked = _reads.seed(endpoint, _log)
    reads.sent(checked)
    switch.ready()
    reads.settle()  # the set-up's own reads are no round's
    return _reads.ReadBench(users, switch, reads)


@app.command()
def main(
    duration: Annotated[float, typer.Option(help="Measured seconds per point.", min=1)] = 10.0,
    warmup: Annotated[float, typer.Option(help="Warm-up seconds before each point (not recorded).", min=0)] = 3.0,
    connections: Annotated[str, typer.Option(help="Connection counts, comma-separated.")] = "8,32,64",
    targets: Annotated[str, typer.Option(help=f"Targets, comma-separated, of: {', '.join(TARGETS)}.")] = ",".join(
        TARGETS
    ),
    scenarios: Annotated[
        str, typer.Option(help=f"Scenarios, comma-separated, of: {', '.join(ALL_SCENARIOS)}.")
    ] = ",".join(ALL_SCENARIOS),
    users: Annotated[
        int, typer.Option(help="Users (bearer tokens) the scenarios rotate through; each has its items.", min=1)
    ] = 8,
    threads: Annotated[int, typer.Option(help="wrk threads (default: one per core).", min=1)] = os.cpu_count() or 1,
    timeout: Annotated[float, typer.Option(help="wrk's per-request timeout, seconds.", min=1)] = 5.0,
    start_timeout: Annotated[float, typer.Option(help="Seconds a target may take to start.", min=10)] = 240.0,
    profile: Annotated[bool, typer.Option(help="py-spy strata's processes under `me` at the most connections.")] = True,
    profile_seconds: Annotated[int, typer.Option(help="Seconds of py-spy sampling.", min=1)] = 10,
    out: Annotated[Path, typer.Option(help="Where results are written.")] = REPO / "benchmarks" / "results",
) -> None:
    """Measure every target in turn and write the table, plots, raw JSON and profiles."""
    chosen = _csv(targets)
    unknown = [t for t in chosen if t not in TARGETS] + [s for s in _csv(scenarios) if s not in ALL_SCENARIOS]
    if unknown:
        raise typer.BadParameter(f"unknown target or scenario: {', '.join(unknown)}")
    counts = sorted({int(c) for c in _csv(connections)})
    try:
        find_wrk()
    except WrkError as exc:
        _log(str(exc))
        raise typer.Exit(2) from exc
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("flame-*.svg"):  # an earlier run's, maybe of processes this run does not have
        stale.unlink()
    started = time.monotonic()
    run: dict[str, Any] = {
        "meta": {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": _machine(),
            "versions": _versions(),
            "duration_s": duration,
            "warmup_s": warmup,
            "threads": threads,
            "timeout_s": timeout,
            "users": users,
            "connections": counts,
            "scenarios": _csv(scenarios),
            "targets": {name: TARGETS[name].label for name in chosen},
            "reads": {"items_per_user": _reads.ITEMS_PER_USER, "page": _reads.PAGE, "standby_order": list(_reads.ABBA)},
        },
        "points": [],
        "failures": {},
    }
    profiles: list[str] = []
    with contextlib.ExitStack() as stack:
        ctx = BenchContext(users=users, start_timeout_s=start_timeout, log=_log, stack=stack)
        for name in chosen:
            load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
            run["meta"].setdefault("load_before", {})[name] = load
            _log(f"target {name}: {TARGETS[name].label} (load average before: {load})")
            try:
                with TARGETS[name].start(ctx) as endpoint:
                    options: dict[str, Any] = {"duration_s": duration, "warmup_s": warmup, "threads": threads}
                    options["timeout_s"] = timeout
                    readers: _reads.ReadBench | None = None
                    for scenario in run["meta"]["scenarios"]:
                        if scenario in SCENARIOS:
                            fixed = _fixed_load(endpoint, scenario)
                            for count in counts:
                                run["points"].append(_measure(endpoint, name, scenario, count, fixed, **options))
                            continue
                        why_not = _reads_unavailable(endpoint)
                        if why_not:
                            _log(f"  {scenario}: not run on {name}: {why_not}")
                            run["meta"].setdefault("not_run", {}).setdefault(name, {})[scenario] = why_not
                            continue
                        if readers is None:
                            readers = _prepare_reads(endpoint)
                        run["points"] += _measure_reads(endpoint, name, scenario, readers, counts, **options)
                    if profile and endpoint.profile_processes and "me" in run["meta"]["scenarios"]:
                        try:
                            profiles.append(
                                _profile_target(endpoint, name, counts[-1], profile_seconds, threads, timeout, out)
                            )
                        except Exception as exc:  # noqa: BLE001 - the measurements stand without the profile
                            _log(f"  profiling {name} failed: {exc}")
                            profiles.append(f"## {name}\n\nProfiling failed: {type(exc).__name__}: {exc}\n")
            except Exception as exc:  # noqa: BLE001 - one target's failure is recorded; the others still run
                run["failures"][name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                _log(f"  {name} failed: {run['failures'][name]}")
            _report.write_json(run, out / "results.json")  # after each target, so an interrupted run keeps them
    run["target"] = _report.target_check(run["points"])
    run["meta"]["elapsed_s"] = round(time.monotonic() - started)
    _report.write_json(run, out / "results.json")
    (out / "results.md").write_text(_report.results_markdown(run))
    if profiles:
        (out / "profile.md").write_text("# Where the time goes (py-spy)\n\n" + "\n".join(profiles))
    try:
        written = _report.plot(run, out)
    except ImportError:
        _log("matplotlib is not installed (pip install 'strata[bench]'): no plots")
        written = []
    files = ", ".join(["results.md", "results.json", *(p.name for p in written)])
    _log(f"wrote {files} to {out} in {run['meta']['elapsed_s']}s")
    print((out / "results.md").read_text())
    if run["failures"]:
        raise typer.Exit(1)


if __name__ == "__main__":
    sys.exit(app())
