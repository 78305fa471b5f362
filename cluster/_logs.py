"""Follow the log files of a running strata (``strata up --foreground``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from strata.cluster._ray import temp_dir_for


def log_files(data_dir: Path) -> dict[str, list[Path]]:
    """Log files by component, as they exist now (Serve's appear as replicas start)."""
    serve_dir = temp_dir_for(data_dir) / "session_latest" / "logs" / "serve"
    return {
        "postgres": [data_dir / "postgres" / "postgres.log"],
        "kafka": [data_dir / "kafka" / "server.log"],
        "serve": sorted(serve_dir.glob("*.log")) if serve_dir.exists() else [],
    }


def follow(data_dir: Path, emit: Callable[[str], None], *, stop: Callable[[], bool], interval: float = 0.5) -> None:
    """Emit new lines of every log file, prefixed by component, until ``stop()`` is true."""
    offsets: dict[Path, int] = {}
    first = True
    while not stop():
        for component, paths in log_files(data_dir).items():
            for path in paths:
                try:
                    size = path.stat().st_size
                except OSError:
                    continue
                # Files present when following starts are shown from their end; new ones from the start.
                start = offsets.get(path, size if first else 0)
                if size < start:
                    start = 0  # rotated
                if size > start:
                    with open(path, "rb") as handle:
                        handle.seek(start)
                        chunk = handle.read(size - start)
                    for line in chunk.decode(errors="replace").splitlines():
                        emit(f"{component:<8} | {line}")
                offsets[path] = size
        first = False
        time.sleep(interval)
