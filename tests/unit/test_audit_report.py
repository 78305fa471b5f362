"""`make audit`'s summary: a package pip-audit could not look up is never reported as clean."""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from typing import Any

import pytest

REPORT = runpy.run_path(str(Path(__file__).resolve().parents[2] / "tools" / "audit_report.py"))


def _summary(tmp_path: Path, dependencies: list[dict[str, Any]]) -> int:
    report = tmp_path / "audit.json"
    report.write_text(json.dumps({"dependencies": dependencies, "fixes": []}))
    return int(REPORT["main"](report))


def test_skipped_packages_are_counted_as_not_audited(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deps = [{"name": "a", "version": "1", "vulns": []}, {"name": "b", "skip_reason": "not found: b (2)"}]
    assert _summary(tmp_path, deps) == 0
    out = capsys.readouterr().out
    assert "1 of 2 packages audited" in out and "1 packages NOT audited" in out


def test_a_known_vulnerability_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deps = [{"name": "a", "version": "1", "vulns": [{"id": "PYSEC-2099-1", "fix_versions": ["2"]}]}]
    assert _summary(tmp_path, deps) == 1
    assert "a 1: PYSEC-2099-1" in capsys.readouterr().out
