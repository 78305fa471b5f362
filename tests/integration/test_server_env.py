"""The servers strata starts get no strata setting and no Ray credential in their environment."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from strata.cluster._ray import haproxy_socket_dir
from strata.cluster._state import State
from tests.conftest import System

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("component", ["postgres", "kafka", "front"])
def test_a_server_s_environment_holds_no_strata_setting_and_no_ray_token(system: System, component: str) -> None:
    # This test process holds the Ray token in its environment (tests/conftest.py), as the `strata` command does.
    recorded = State.load(system.settings.data_dir.resolve()).components[component]
    assert recorded.procs, component
    for proc in recorded.procs:
        raw = Path(f"/proc/{proc.pid}/environ").read_bytes()
        names = {entry.split(b"=", 1)[0].decode() for entry in raw.split(b"\0") if entry}
        assert names, f"{component} ({proc.pid}) has an empty environment"
        leaked = sorted(n for n in names if n.startswith(("STRATA_", "RAY_AUTH")))
        assert leaked == [], f"{component} ({proc.pid}) inherited {leaked}"


def test_serve_s_haproxy_admin_socket_sits_in_a_dir_only_this_user_enters(system: System) -> None:
    sockets = haproxy_socket_dir(system.settings.data_dir.resolve())
    info = sockets.lstat()
    assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
    assert stat.S_IMODE(info.st_mode) == 0o700
    # HAProxy made its admin socket there, under a directory per node (mode 666 itself: this directory is what
    # keeps others out).
    assert any(stat.S_ISSOCK(p.lstat().st_mode) and p.name == "admin.sock" for p in sockets.rglob("*"))
