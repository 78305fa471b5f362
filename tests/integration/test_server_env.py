"""The servers strata starts get no strata setting and no Ray credential in their environment."""

from __future__ import annotations

from pathlib import Path

import pytest

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
