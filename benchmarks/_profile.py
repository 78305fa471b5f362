"""Where the time goes: py-spy samples of the target's processes while wrk loads it.

py-spy records collapsed stacks (``--format raw``: one line per distinct stack, ``frame;frame;... count``;
``--gil``: only the thread holding the GIL, so waiting threads drop out; ``--nonblocking`` so the target is
never paused); from them this module draws a
flame graph (SVG) and ranks functions by self and inclusive samples for the analysis.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import sys
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psutil

Stacks = dict[tuple[str, ...], int]
RATE = 100
"""Samples per second py-spy takes."""


def find_py_spy() -> str | None:
    candidate = Path(sys.executable).parent / "py-spy"
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


def find_processes(marker: str, within: str | None = None) -> list[int]:
    """Pids whose command line (or process title, as Ray sets for replicas) contains ``marker``; with ``within``,
    only descendants of processes whose command line contains ``within`` (e.g. one Ray head's temp dir: other
    systems on the machine have replicas of the same names)."""
    allowed: set[int] | None = None
    if within is not None:
        allowed = set()
        for proc in psutil.process_iter(["cmdline"]):
            try:
                if any(within in part for part in proc.info["cmdline"] or []):
                    allowed.update(child.pid for child in proc.children(recursive=True))
            except psutil.Error:
                continue
    pids: list[int] = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
        except psutil.Error:
            continue
        if marker in cmdline and "py-spy" not in cmdline and (allowed is None or proc.pid in allowed):
            pids.append(proc.pid)
    return pids


def start_recording(pid: int, out: Path, duration_s: int, rate: int = RATE) -> subprocess.Popen[bytes]:
    """Start ``py-spy record`` of ``pid`` for ``duration_s`` into ``out`` (collapsed stacks)."""
    exe = find_py_spy()
    if exe is None:
        raise FileNotFoundError("py-spy is not installed (pip install 'strata[bench]')")
    command = [
        exe,
        "record",
        f"--pid={pid}",
        f"--duration={duration_s}",
        f"--rate={rate}",
        "--format=raw",
        "--nonblocking",
        "--gil",  # only the thread holding the GIL: where the process's Python CPU time goes
        "--full-filenames",  # so each frame's package can be told (package_of)
        f"--output={out}",
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def parse_collapsed(text: str) -> Stacks:
    """``frame;frame;... count`` lines (py-spy's raw format) as a mapping of stack -> samples."""
    stacks: Stacks = {}
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        key = tuple(stack.split(";"))
        stacks[key] = stacks.get(key, 0) + int(count)
    return stacks


_LINE = re.compile(r" \((?P<file>[^()]*?)(?::\d+)?\)$")


def function_name(frame: str) -> str:
    """``name (path/to/file.py:123)`` -> ``name (file.py)``: one entry per function, whatever the line."""
    match = _LINE.search(frame)
    if match is None:
        return frame
    return f"{frame[: match.start()]} ({Path(match['file']).name})"


_FRAME_FILE = re.compile(r" \((?P<file>[^()]*?)(?::\d+)?\)$")
_STRATA_DIRS = ("serve_apps", "actors", "schemas", "cluster", "benchmarks")


def package_of(frame: str) -> str:
    """Which code a frame runs: a third-party package (``ray.serve``, ``starlette``), the standard library
    (``stdlib asyncio``) or strata (``strata serve_apps/gateway``), from the frame's file path."""
    match = _FRAME_FILE.search(frame)
    if match is None:
        return "?"
    parts = Path(match["file"]).parts
    if "site-packages" in parts:
        rest = parts[parts.index("site-packages") + 1 :]
        if not rest:
            return "?"
        name = rest[0].removesuffix(".py")
        if name == "strata" or name.startswith("__editable__"):
            return "strata"
        if name == "ray" and len(rest) > 2:  # ray.serve, ray._private, ray.util, ...
            return f"ray.{rest[1].removesuffix('.py')}"
        return name
    for index, part in enumerate(parts):
        if part in _STRATA_DIRS and index + 1 < len(parts):
            inner = parts[index + 1]
            return f"strata {part}/{inner}" if not inner.endswith(".py") else f"strata {part}"
        if part.startswith("python3") and index > 0 and parts[index - 1] == "lib" and index + 1 < len(parts):
            return f"stdlib {parts[index + 1].removesuffix('.py')}"
    return Path(match["file"]).name or "?"


@dataclass(frozen=True)
class Ranking:
    total: int
    self_samples: list[tuple[str, int]]
    inclusive_samples: list[tuple[str, int]]
    packages: list[tuple[str, int]]
    """Self samples by the package of the frame on top of the stack."""


def rank_functions(stacks: Stacks, top: int = 15) -> Ranking:
    """Functions by self samples (on top of the stack) and inclusive samples (anywhere in it); packages by self
    samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    for stack, count in stacks.items():
        if not stack:
            continue
        own[function_name(stack[-1])] += count
        packages[package_of(stack[-1])] += count
        for name in {function_name(frame) for frame in stack}:
            inclusive[name] += count
    return Ranking(sum(stacks.values()), own.most_common(top), inclusive.most_common(top), packages.most_common(top))


def flame_graph_svg(stacks: Stacks, title: str, width: int = 1200, row: int = 16) -> str:
    """A static flame graph: root at the bottom, each frame as wide as its share of the samples."""
    counts: dict[tuple[str, ...], int] = {}
    for stack, count in stacks.items():
        for depth in range(1, len(stack) + 1):
            counts[stack[:depth]] = counts.get(stack[:depth], 0) + count
    total = sum(stacks.values()) or 1
    depth_max = max((len(s) for s in stacks), default=0)
    height = (depth_max + 3) * row
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="monospace"'
        f' font-size="11">',
        f'<text x="{width / 2}" y="{row}" text-anchor="middle" font-size="13">{html.escape(title)}'
        f" ({total} samples)</text>",
    ]
    children: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for path in sorted(counts):
        children.setdefault(path[:-1], []).append(path)

    def draw(path: tuple[str, ...], x: float) -> None:
        for child in children.get(path, []):
            w = counts[child] / total * width
            if w >= 0.5:
                y = height - (len(child) + 1) * row
                name = child[-1]
                hue = zlib.crc32(function_name(name).encode()) % 60
                label = html.escape(name)
                share = counts[child] / total * 100
                parts.append(
                    f"<g><title>{label} ({counts[child]} samples, {share:.1f}%)</title>"
                    f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row - 1}" fill="hsl({hue},85%,60%)"/>'
                )
                chars = int(w / 7)
                if chars >= 4:
                    text = name if len(name) <= chars else name[: chars - 2] + ".."
                    parts.append(f'<text x="{x + 2:.1f}" y="{y + row - 4}">{html.escape(text)}</text>')
                parts.append("</g>")
                draw(child, x)
            x += w

    draw((), 0.0)
    parts.append("</svg>")
    return "\n".join(parts)


def ranking_markdown(name: str, ranking: Ranking, possible_samples: int) -> str:
    """Two small tables (self, inclusive) of one process's profile; ``possible_samples`` = rate x seconds."""
    if ranking.total == 0:
        return f"### {name}\n\nNo sample held the GIL: this process was idle.\n"
    busy = ranking.total / possible_samples * 100 if possible_samples else 0.0
    lines = [
        f"### {name}",
        "",
        f"{ranking.total} samples holding the GIL out of {possible_samples} taken: the GIL was held about"
        f" {busy:.0f} % of the time.",
        "",
    ]
    tables = (
        ("package (self)", ranking.packages),
        ("function (self)", ranking.self_samples),
        ("function (inclusive)", ranking.inclusive_samples),
    )
    for heading, rows in tables:
        lines += [f"| {heading} | samples | share |", "| --- | ---: | ---: |"]
        for fn, count in rows:
            share = count / ranking.total * 100 if ranking.total else 0.0
            lines.append(f"| `{fn.replace('|', '/')}` | {count} | {share:.1f}% |")
        lines.append("")
    return "\n".join(lines)
