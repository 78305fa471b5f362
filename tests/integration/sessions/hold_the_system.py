"""A test session that holds its system until it is stopped: `test_orphans.py` runs it in a child process and sends
it SIGTERM. Not collected by the suite itself (its name is not ``test_*.py``); run only when named."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.conftest import System

pytestmark = pytest.mark.integration

HOLD_AT_MOST_S = 500.0  # below pytest-timeout's 600 s: a parent that never signals does not leave it behind


def test_hold_the_system_until_stopped(system: System, ray_driver: None) -> None:
    # As a Ray driver too: ray.init() installs its own SIGTERM handler, which the session's must outlast.
    Path(os.environ["HOLD_SYSTEM_READY_FILE"]).write_text(str(system.settings.data_dir))
    time.sleep(HOLD_AT_MOST_S)
