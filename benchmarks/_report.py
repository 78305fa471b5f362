"""Writing a run's results: the raw JSON, the markdown table and the PNG plots.

matplotlib is imported only when plotting (it is in the ``bench`` extra), so the rest of this module
(and the unit tests of the table) work without it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def scenario_label(point: dict[str, Any], *, with_round: bool = False) -> str:
    """The scenario of a point as the tables name it: a read scenario's says whether the standby was on, and which
    round of that state it was (each is measured twice)."""
    if "standby" not in point:
        return str(point["scenario"])
    measured = f", run {point['round']}" if with_round and "round" in point else ""
    return f"{point['scenario']} (standby {point['standby']}{measured})"


def point_row(point: dict[str, Any]) -> str:
    """One table row: a target at one scenario and connection count."""
    label = scenario_label(point, with_round=True)
    if point.get("error"):
        return f"| {label} | {point['target']} | {point['connections']} | failed: {point['error']} |||||"
    lat = point["latency_ms"]
    errors = point["errors"]
    kinds = [f"{name} {count}" for name, count in errors.items() if count and name != "http"]
    kinds += [f"HTTP {code}: {count}" for code, count in point.get("statuses", {}).items()]
    detail = ", ".join(kinds)
    return (
        f"| {label} | {point['target']} | {point['connections']} | {point['rps']:,.0f} "
        f"| {lat['p50']:.1f} | {lat['p99']:.1f} | {point['error_count']}{f' ({detail})' if detail else ''} "
        f"| {point['cpu_percent']:.0f} | {point['wrk_cpu_percent']:.0f} |"
    )


def results_markdown(run: dict[str, Any]) -> str:
    """``results.md``: when and where the run was made, the table, and what failed."""
    meta = run["meta"]
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (benchmarks/run.py); see docs/benchmarks.md for what is measured and how, and",
        "analysis.md beside this file for what the numbers say.",
        "",
        f"- date: {meta['date']}",
        f"- machine: {meta['machine']}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}",
        f"- per point: {meta['warmup_s']:g} s warm-up, then {meta['duration_s']:g} s measured; wrk with "
        f"{meta['threads']} threads, timeout {meta['timeout_s']:g} s; {meta['users']} users' tokens in rotation",
        "",
        "Targets (with the machine's load average, 1/5/15 min, just before each started: the machine is shared):",
        "",
    ]
    loads = meta.get("load_before", {})
    lines += [
        f"- `{name}`: {label}" + (f" (load {loads[name]})" if name in loads else "")
        for name, label in meta["targets"].items()
    ]
    lines += [
        "",
        "| scenario | target | connections | req/s | p50 ms | p99 ms | errors | machine CPU % | wrk CPU % |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    lines += [point_row(p) for p in sorted(run["points"], key=_order(meta))]
    lines += [
        "",
        "errors = responses that are not 2xx (by status) plus socket errors (connect, read, write, timeout); a request",
        "that times out is left out of wrk's latency percentiles, so a point with timeouts reads better than it was.",
        "machine CPU % is all cores together (100 % = every core busy), wrk's own share included;",
        "wrk CPU % is the load generator's part of it.",
    ]
    lines += reads_section(run)
    lines += cpu_section(run)
    not_run = meta.get("not_run") or {}
    if not_run:
        lines += ["", "Not run:", ""]
        lines += [
            f"- `{name}`, {', '.join(f'`{s}`' for s in scenarios)}: {next(iter(scenarios.values()))}"
            for name, scenarios in not_run.items()
        ]
    failures = run.get("failures") or {}
    if failures:
        lines += ["", "## Failures", ""]
        lines += [f"- `{name}`: {reason}" for name, reason in failures.items()]
    for name, check in (run.get("target") or {}).items():
        if check:
            lines += ["", f"p99 of `me` at 64 connections, {name}: {check}"]
    return "\n".join(lines) + "\n"


def cpu_section(run: dict[str, Any]) -> list[str]:
    """Where the CPU went at the highest connection count of each scenario: the target's process groups, and
    everything else on the machine (wrk excluded: it is the column above)."""
    points = [p for p in run["points"] if not p.get("error") and p.get("cpu_by_group")]
    if not points:
        return []
    top = max(int(p["connections"]) for p in points)
    lines = [
        "",
        f"## Where the CPU went at {top} connections",
        "",
        "% of all cores over the measured run, by process group (groups under 0.5 % left out); `other processes` is",
        "everything on the machine that is not the target or wrk (on a shared machine: other people's work).",
        "",
        "| scenario | target | CPU by process group |",
        "| --- | --- | --- |",
    ]
    for p in sorted((p for p in points if int(p["connections"]) == top), key=_order(run["meta"])):
        split = ", ".join(f"{group} {share:g}" for group, share in p["cpu_by_group"].items())
        lines.append(f"| {scenario_label(p, with_round=True)} | {p['target']} | {split} |")
    return lines


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:g} %"


def reads_section(run: dict[str, Any]) -> list[str]:
    """The read scenarios side by side, standby on against off: each state's two runs, and where their reads ran."""
    points = [p for p in run["points"] if "standby" in p and not p.get("error")]
    if not points:
        return []
    order = run["meta"].get("reads", {}).get("standby_order") or ["on", "off", "off", "on"]
    lines = [
        "",
        "## Reads with the standby on and off",
        "",
        f"One running system; its standby stopped and started again between runs, in the order {', '.join(order)}",
        "(every connection count in each), so that drift over the run weighs on both states alike. With the standby",
        "off, reads go to the primary. req/s and p99 are each state's two runs; *on the standby* is the share of the",
        'reads (warm-up included) that strata counted on the standby (`strata_db_reads_total{service="data"}`),',
        "out of *reads counted*.",
        "",
        "| scenario | target | connections | standby | req/s (runs) | p99 ms (runs) | reads counted | on the standby |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    groups: dict[tuple[str, str, int, str], list[dict[str, Any]]] = {}
    for p in sorted(points, key=_order(run["meta"])):
        groups.setdefault((p["scenario"], p["target"], int(p["connections"]), p["standby"]), []).append(p)
    for (scenario, target, connections, standby), runs in groups.items():
        rps = " / ".join(f"{p['rps']:,.0f}" for p in runs)
        p99 = " / ".join(f"{p['latency_ms']['p99']:.1f}" for p in runs)
        counted = sum(int(p.get("reads_counted") or 0) for p in runs)
        shares = " / ".join(_percent(p.get("on_standby_percent")) for p in runs)
        lines.append(f"| {scenario} | {target} | {connections} | {standby} | {rps} | {p99} | {counted:,} | {shares} |")
    return lines


def _order(meta: dict[str, Any]) -> Any:
    targets = list(meta["targets"])
    scenarios = list(meta["scenarios"])

    def key(point: dict[str, Any]) -> tuple[int, int, int, int, int]:
        return (
            scenarios.index(point["scenario"]) if point["scenario"] in scenarios else 99,
            targets.index(point["target"]) if point["target"] in targets else 99,
            int(point["connections"]),
            0 if point.get("standby", "on") == "on" else 1,
            int(point.get("round", 1)),
        )

    return key


def write_json(run: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(run, indent=2, sort_keys=True) + "\n")


def plot(run: dict[str, Any], out_dir: Path) -> list[Path]:
    """One PNG per scenario: req/s and p99 against connections (log scales), one line per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    written: list[Path] = []
    meta = run["meta"]
    for scenario in meta["scenarios"]:
        points = [p for p in run["points"] if p["scenario"] == scenario and not p.get("error")]
        if not points:
            continue
        fig, (ax_rps, ax_p99) = plt.subplots(1, 2, figsize=(12, 4.5))
        for label, (xs, rps, p99) in plot_series(points, list(meta["targets"])).items():
            ax_rps.plot(xs, rps, marker="o", label=label)
            ax_p99.plot(xs, p99, marker="o", label=label)
        for ax, ylabel in ((ax_rps, "requests/s"), (ax_p99, "p99 latency, ms")):
            ax.set_xlabel("connections")
            ax.set_ylabel(ylabel)
            ax.set_xticks(sorted({p["connections"] for p in points}))
            ax.grid(True, alpha=0.3)
        if scenario == "me":
            ax_p99.axhline(200, color="red", linestyle="--", linewidth=1, label="target: p99 < 200 ms")
        for ax in (ax_rps, ax_p99):  # log scales: the targets differ by orders of magnitude
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
            ax.yaxis.set_minor_formatter(
                ticker.FuncFormatter(lambda v, _: f"{v:,.0f}" if f"{v:g}"[0] in "25" and v >= 1 else "")
            )
        ax_rps.legend(fontsize=8)
        ax_p99.legend(fontsize=8)
        fig.suptitle(f"scenario `{scenario}` ({meta['date']}, {meta['machine']})", fontsize=10)
        fig.tight_layout()
        path = out_dir / f"{scenario}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def plot_series(
    points: Iterable[dict[str, Any]], targets: list[str]
) -> dict[str, tuple[list[int], list[float], list[float]]]:
    """One line per target (and standby state, for the read scenarios): connections, req/s and p99, the mean of a
    state's runs at each connection count."""
    by_line: dict[str, dict[int, list[dict[str, Any]]]] = {}
    ordered = sorted(points, key=lambda p: targets.index(p["target"]) if p["target"] in targets else 99)
    for p in ordered:
        label = p["target"] + (f" (standby {p['standby']})" if "standby" in p else "")
        by_line.setdefault(label, {}).setdefault(int(p["connections"]), []).append(p)
    series = {}
    for label, by_count in by_line.items():
        xs = sorted(by_count)
        rps = [sum(p["rps"] for p in by_count[x]) / len(by_count[x]) for x in xs]
        p99 = [sum(p["latency_ms"]["p99"] for p in by_count[x]) / len(by_count[x]) for x in xs]
        series[label] = (xs, rps, p99)
    return series


def target_check(points: Iterable[dict[str, Any]], bound_ms: float = 200.0) -> dict[str, str]:
    """For each target: p99 of `me` at 64 connections against the bound, in words."""
    verdicts: dict[str, str] = {}
    for p in points:
        if p["scenario"] == "me" and p["connections"] == 64 and not p.get("error"):
            p99 = p["latency_ms"]["p99"]
            verdict = "meets" if p99 < bound_ms and p["error_count"] == 0 else "misses"
            verdicts[p["target"]] = f"{p99:.0f} ms ({verdict} p99 < {bound_ms:.0f} ms, {p['error_count']} errors)"
    return verdicts
