"""Serve's HAProxy admin socket lives in a directory only strata's user may enter, or strata does not start."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from strata.cluster import _ray
from strata.cluster._errors import StartupError


def test_the_socket_dir_is_made_0700_and_sits_under_the_length_haproxy_allows(tmp_path: Path) -> None:
    made = _ray.ensure_private_dir(tmp_path / "sockets")
    assert made.is_dir() and made.stat().st_mode & 0o777 == 0o700 and made.stat().st_uid == os.geteuid()
    assert _ray.ensure_private_dir(made) == made  # an own private dir is used again
    # HAProxy takes socket paths of at most 97 characters; Serve adds "/admin.sock" and a 56-character node id.
    assert len(str(_ray.haproxy_socket_dir(tmp_path / ("a" * 200)))) + len("/admin.sock") + 56 <= 97


def test_a_dir_open_to_others_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "sockets"
    shared.mkdir()
    shared.chmod(0o755)
    with pytest.raises(StartupError, match="mode 0755, open to other users"):
        _ray.ensure_private_dir(shared)


def test_a_dir_of_another_user_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    theirs = tmp_path / "sockets"
    theirs.mkdir(mode=0o700)
    monkeypatch.setattr(_ray.os, "geteuid", lambda: theirs.stat().st_uid + 1)
    with pytest.raises(StartupError, match=r"belongs to uid \d+, not to this user"):
        _ray.ensure_private_dir(theirs)


def test_a_link_in_place_of_the_dir_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (tmp_path / "sockets").symlink_to(target)
    with pytest.raises(StartupError, match="not a link"):
        _ray.ensure_private_dir(tmp_path / "sockets")
