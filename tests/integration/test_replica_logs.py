"""A client's error raised in a service replica is one INFO line in that replica's log, without a traceback."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import pytest

from strata.cluster._ray import temp_dir_for
from strata.contracts import UsersClient
from strata.schemas import UserNotFound
from tests.conftest import System

pytestmark = pytest.mark.integration


def _replica_logs(system: System, deployment: str) -> list[Path]:
    serve_logs = temp_dir_for(system.settings.data_dir.resolve()) / "session_latest" / "logs" / "serve"
    # `replica_<app>_<deployment>_<id>.log`; the trailing `_` leaves out the service's entry deployment.
    paths = sorted(serve_logs.glob(f"replica_*{deployment}_*.log"))
    assert paths, f"no log file of {deployment} under {serve_logs}"
    return paths


def _sizes(paths: list[Path]) -> dict[Path, int]:
    return {path: path.stat().st_size for path in paths}


def _records_since(sizes: dict[Path, int]) -> list[dict[str, object]]:
    """The JSON records written to these files since ``sizes`` was taken (complete lines only)."""
    records = []
    for path, offset in sizes.items():
        with open(path, "rb") as handle:
            handle.seek(offset)
            lines = handle.read().decode(errors="replace").split("\n")[:-1]
        records += [json.loads(line) for line in lines if line.startswith("{")]
    return records


def _wait_for(sizes: dict[Path, int], message: str, timeout: float = 15.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while True:
        records = _records_since(sizes)
        if any(message in str(record.get("message", "")) for record in records):
            return records
        assert time.monotonic() < deadline, f"no record with {message!r} in {len(records)} new records: {records[-5:]}"
        time.sleep(0.2)


def _assert_no_traceback_of(records: list[dict[str, object]], error: str) -> None:
    for record in records:
        text = json.dumps(record)
        assert not (error in text and ("Traceback" in text or record.get("levelname") == "ERROR")), record


def test_a_wrong_password_logs_one_info_line_in_the_auth_replica_and_no_traceback(system: System) -> None:
    email = f"logs-{uuid.uuid4().hex[:10]}@example.com"
    password = system.remember_secret(f"Logged-Pass-{uuid.uuid4().hex[:12]}")
    with system.client() as client:
        assert client.post("/v1/auth/register", json={"email": email, "password": password}).status_code == 201
        sizes = _sizes(_replica_logs(system, "AuthService"))
        try:
            refused = client.post("/v1/auth/login", json={"email": email, "password": password + "-wrong"})
        finally:
            system.forget_client_login_failures()
    assert refused.status_code == 401, refused.text
    records = _wait_for(sizes, "request refused: 401 invalid-credentials (InvalidCredentials)")
    refusal = next(r for r in records if "request refused: 401" in str(r.get("message")))
    assert refusal["levelname"] == "INFO" and "exc_text" not in refusal
    _assert_no_traceback_of(records, "InvalidCredentials")


async def test_an_unknown_user_logs_one_info_line_in_the_users_replica_and_no_traceback(
    system: System, ray_driver: None
) -> None:
    sizes = _sizes(_replica_logs(system, "UsersService"))
    with pytest.raises(UserNotFound):
        await UsersClient().get_user(str(uuid.uuid4()))
    records = await asyncio.to_thread(_wait_for, sizes, "request refused: 404 not-found (UserNotFound)")
    refusal = next(r for r in records if "request refused: 404" in str(r.get("message")))
    assert refusal["levelname"] == "INFO" and "exc_text" not in refusal
    _assert_no_traceback_of(records, "UserNotFound")
