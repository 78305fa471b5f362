"""Follow the log files of a running strata (``strata up --foreground``), one readable line per record.

Serve's files hold JSON lines (``logging_config.encoding: JSON``), which stay as
they are for tools; followed, each record becomes
``08:12:01.123 INFO  users.UsersService  profile read  [req 3f2a...]`` (time,
level, application.deployment or Serve's controller/proxy, message, request id),
its traceback, if any, on indented lines below. PostgreSQL's and Kafka's lines
are shown as they are, after their component's name.
"""

from __future__ import annotations

import ast
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from strata.cluster._ray import temp_dir_for
from strata.schemas import app_names

_INDENT = "    "
_TRACEBACK_PIECE = re.compile(r"""\((?P<literal>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"),\)""")


def log_files(data_dir: Path) -> dict[str, list[Path]]:
    """Log files by component, as they exist now (Serve's appear as replicas start)."""
    serve_dir = temp_dir_for(data_dir) / "session_latest" / "logs" / "serve"
    return {
        "postgres": [data_dir / "postgres" / "postgres.log"],
        "kafka": [data_dir / "kafka" / "server.log"],
        "serve": sorted(serve_dir.glob("*.log")) if serve_dir.exists() else [],
    }


def readable_lines(component: str, line: str) -> list[str]:
    """``line`` of ``component``'s log as `follow` shows it.

    A Serve JSON record becomes one line (``time level source  message  [req id]``) followed by its traceback
    (``exc_text``), indented; every other line (PostgreSQL, Kafka, anything not such a record) is returned as it is,
    after the component's name.
    """
    record = _serve_record(line)
    if record is None:
        return [f"{component:<8} | {line}"]
    message, *continued = str(record["message"]).splitlines() or [""]
    request_id = record.get("request_id")
    head = f"{_clock(record)} {record.get('levelname', ''):<5} {_source(record)}  {message}"
    if request_id:
        head += f"  [req {request_id}]"
    traceback = _traceback(str(record.get("exc_text") or "")).splitlines()
    return [head, *(_INDENT + extra for extra in [*continued, *traceback])]


def _traceback(exc_text: str) -> str:
    """The traceback of a record. Serve's replicas write it as the reprs of one-string tuples, one per line of
    the traceback (``('Traceback (most recent call last):\\n',)('  File ...',)...``): those are read back into
    the lines they hold; any other text is the traceback itself."""
    pieces = list(_TRACEBACK_PIECE.finditer(exc_text))
    if not pieces or "".join(piece.group(0) for piece in pieces) != exc_text:
        return exc_text
    return "".join(ast.literal_eval(piece.group("literal")) for piece in pieces)


def _serve_record(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) and "message" in record else None


def _clock(record: dict[str, Any]) -> str:
    # Serve's asctime is "2026-12-01 08:40:16,486": the day is today's, the time is what a reader scans.
    asctime = str(record.get("asctime", ""))
    return asctime.rpartition(" ")[2].replace(",", ".") or "--:--:--.---"


def _source(record: dict[str, Any]) -> str:
    """``application.Deployment`` for a replica's record, else Serve's own component (``serve.controller``)."""
    deployment = record.get("deployment")
    if not deployment:
        return f"serve.{record.get('component_name', '?')}"
    # A replica names its deployment "<app>_<Deployment>"; its application is named only inside a request.
    apps = [record["application"]] if record.get("application") else app_names()
    for app in apps:
        if str(deployment).startswith(f"{app}_"):
            return f"{app}.{str(deployment).removeprefix(f'{app}_')}"
    return str(deployment)


def follow(data_dir: Path, emit: Callable[[str], None], *, stop: Callable[[], bool], interval: float = 0.5) -> None:
    """Emit new lines of every log file, readable (:func:`readable_lines`), until ``stop()`` is true."""
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
                    # Up to the last complete line: a record being written is shown once it is whole.
                    complete = chunk.rfind(b"\n") + 1
                    for line in chunk[:complete].decode(errors="replace").splitlines():
                        for shown in readable_lines(component, line):
                            emit(shown)
                    size = start + complete
                offsets[path] = size
        first = False
        time.sleep(interval)
