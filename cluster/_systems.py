"""Every strata system this user started on this machine, so that one nobody will stop is found and stopped.

A system is started by `strata up` (detached it belongs to nobody; with ``--foreground`` the command owns it), by a
test session or by `make bench` (they own it, in a throw-away temp data dir). Each start records, in one per-user
place (``$XDG_STATE_HOME/strata/systems``, else ``~/.local/state/strata/systems``), one file per data dir: the data
dir, the owner process (pid and start time, so a recycled pid is not taken for it) and whether the data dir is a
throw-away one. `strata down` forgets the file.

A system whose owner is gone is an **orphan**: its owner was killed before it could stop it (SIGKILL, a machine
that ran out of memory, a CI job cut off), and its servers run on, busy with their own timers. A new test session and
`strata up` first stop the orphans in throw-away data dirs and remove those dirs; `strata down --orphans` stops every
orphan, and keeps the data of a kept data dir. Their processes are found by what the system recorded under its data
dir (``state.json``, the Ray head's private temp dir): the same code as `strata down`, never a pattern on process
names that could match someone else's server.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from strata.cluster._component import Echo
from strata.cluster._state import Proc
from strata.schemas import Settings


def registry_dir() -> Path:
    """The per-user place where systems are recorded (created private to this user on first use)."""
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "strata" / "systems"


@dataclass(frozen=True)
class SystemRecord:
    """One system as recorded at its start."""

    data_dir: Path
    owner: Proc | None
    """The process whose life the system shares; ``None`` for a detached `strata up` (it is stopped by `down`)."""
    throwaway: bool
    """The data dir is a temp dir of a test session or a benchmark: removed once the system is stopped."""
    started_by: str
    """Who started it, as messages say: ``strata up``, ``test session``, ``benchmark``."""
    settings: dict[str, Any]
    """The settings it was started with, less its secrets: enough to stop it (ports, which servers are embedded)."""

    @property
    def orphaned(self) -> bool:
        """Whether it had an owner and that owner is gone."""
        return self.owner is not None and not self.owner.alive()

    def describe(self) -> str:
        owner = f", owner pid {self.owner.pid} gone" if self.owner is not None and self.orphaned else ""
        return f"{self.started_by} in {self.data_dir}{owner}"


def _entry_path(data_dir: Path) -> Path:
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    return registry_dir() / f"{digest}.json"


def _public_settings(settings: Settings) -> dict[str, Any]:
    """``settings`` as JSON, without any secret (the file is not a secret store; a data dir holds its own)."""
    secret = {name for name, value in settings if isinstance(value, SecretStr)}
    return settings.model_dump(mode="json", exclude=secret)


def register(settings: Settings, *, owner: int | None, throwaway: bool, started_by: str) -> None:
    """Record the system of ``settings`` as started by process ``owner`` (``None``: it belongs to nobody).

    A record whose owner still runs is kept: a second `strata up` on a system a foreground `strata up` holds does not
    take it over.
    """
    data_dir = settings.data_dir.resolve()
    current = _load(_entry_path(data_dir))
    if current is not None and current.owner is not None and current.owner.alive():
        return
    directory = registry_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    entry = {
        "data_dir": str(data_dir),
        "owner": None if owner is None else {"pid": owner, "create_time": Proc.of(owner).create_time},
        "throwaway": throwaway,
        "started_by": started_by,
        "settings": _public_settings(settings),
    }
    path = _entry_path(data_dir)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(entry, indent=2))
    os.replace(tmp, path)


def unregister(data_dir: Path) -> None:
    """Forget the system of ``data_dir`` (it was stopped)."""
    with contextlib.suppress(FileNotFoundError):
        _entry_path(data_dir).unlink()


def _load(path: Path) -> SystemRecord | None:
    try:
        raw = json.loads(path.read_text())
        owner = raw.get("owner")
        return SystemRecord(
            data_dir=Path(raw["data_dir"]),
            owner=None if owner is None else Proc(int(owner["pid"]), float(owner["create_time"])),
            throwaway=bool(raw.get("throwaway", False)),
            started_by=str(raw.get("started_by", "strata")),
            settings=dict(raw.get("settings", {})),
        )
    except (OSError, ValueError, TypeError, KeyError):
        return None


def systems() -> list[SystemRecord]:
    """Every system recorded for this user (a torn or unreadable record is skipped)."""
    directory = registry_dir()
    if not directory.is_dir():
        return []
    found = (_load(path) for path in sorted(directory.glob("*.json")))
    return [record for record in found if record is not None]


def orphans(*, throwaway_only: bool) -> list[SystemRecord]:
    """The recorded systems whose owner is gone (only those in throw-away data dirs, if ``throwaway_only``)."""
    return [s for s in systems() if s.orphaned and (s.throwaway or not throwaway_only)]


def _settings_of(record: SystemRecord) -> Settings:
    # Every setting it ran with, given explicitly: this process's STRATA_* environment and .env must not change how
    # another system is found (which servers are embedded, on which ports).
    return Settings(_env_file=None, **{**record.settings, "data_dir": record.data_dir})


def stop_orphans(
    stop: Callable[[Settings], list[int]], *, throwaway_only: bool, besides: Path | None = None, echo: Echo
) -> list[SystemRecord]:
    """Stop every orphan (in throw-away data dirs only, if ``throwaway_only``) with ``stop`` (`strata down`'s code),
    remove a throw-away data dir and Ray's temp dir beside it, and forget the record; ``besides`` (a data dir) is left
    alone. Says what it stops; returns the systems it stopped."""
    from strata.cluster._ray import temp_dir_for

    stopped: list[SystemRecord] = []
    for record in orphans(throwaway_only=throwaway_only):
        if besides is not None and record.data_dir == besides.resolve():
            continue
        if not record.data_dir.exists():
            echo(f"forgetting an orphaned strata system ({record.describe()}): its data dir is gone")
            unregister(record.data_dir)
            continue
        try:
            settings = _settings_of(record)
        except ValidationError as exc:
            echo(f"cannot stop an orphaned strata system ({record.describe()}): its recorded settings: {exc}")
            continue
        pids = stop(settings)
        kept = "its data removed" if record.throwaway else "its data kept"
        echo(f"stopped an orphaned strata system ({record.describe()}): {len(pids)} processes, {kept}")
        if record.throwaway:
            shutil.rmtree(temp_dir_for(record.data_dir), ignore_errors=True)
            shutil.rmtree(record.data_dir, ignore_errors=True)
        unregister(record.data_dir)
        stopped.append(record)
    return stopped
