"""The README's first session, run as a newcomer would: its shell block, with curl, against the session's system.

Only what must differ is replaced: the gateway's address and CA (the session's own) and the email (each run
registers a new account). A README whose commands stop working fails here.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import System

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"


def first_session_block() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("A first session with the API")
    match = re.compile(r"```sh\n(.*?)```", re.DOTALL).search(text, start)
    assert match is not None, "the README's first session has no sh block"
    return match.group(1)


def test_the_block_names_what_the_test_replaces() -> None:
    block = first_session_block()
    for needed in ("API=https://127.0.0.1:8000", "CA=.strata/tls/ca.pem", "ada@example.com", "/v1/collections"):
        assert needed in block


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_first_session_runs_as_written(system: System) -> None:
    ca = system.runtime.ca_file
    assert ca is not None
    block = (
        first_session_block()
        .replace("API=https://127.0.0.1:8000", f"API={system.runtime.gateway_url}")
        .replace("CA=.strata/tls/ca.pem", f"CA={ca}")
        .replace("ada@example.com", f"newcomer-{uuid.uuid4().hex[:10]}@example.com")
    )
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout  # curl writes no newline after a body: a status line may follow the last body on its line
    assert re.search(r"HTTP/[0-9.]+ 200 ", out), out[-2000:]  # /v1/users/me
    assert re.search(r"HTTP/[0-9.]+ 201 ", out), out[-2000:]  # the item
    assert re.search(r'^etag: "1"', out, re.MULTILINE | re.IGNORECASE), out[-2000:]
    assert re.search(r"^location: /v1/collections/[0-9a-f-]{36}/items/[0-9a-f-]{36}", out, re.M | re.I), out[-2000:]
    listing = json.loads(out[out.rindex('{"items":') :])
    assert [item["title"] for item in listing["items"]] == ["Dune"]
    assert listing["items"][0]["attributes"] == {"pages": 412} and listing["next_cursor"] is None
