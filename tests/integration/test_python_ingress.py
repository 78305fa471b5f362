"""The fallback ingress (``STRATA_INGRESS=python``): Serve's Python proxy terminates TLS itself, no TLS front.

It runs last, on a system of its own (its own PostgreSQL, Kafka and Ray), after the session's system is down,
so that the two never compete for the machine or for consumer groups.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from strata.cluster import Runtime, down, status, up
from strata.cluster._ray import temp_dir_for
from strata.schemas import Settings
from tests.conftest import make_settings

pytestmark = [pytest.mark.integration, pytest.mark.last]


@pytest.fixture(scope="module")
def python_ingress() -> Iterator[tuple[Settings, Runtime]]:
    data_dir = Path(tempfile.mkdtemp(prefix="strata-test-python-"))
    # The Python proxy is what differs here; no standby is needed to show it (one less server to start).
    settings = make_settings(
        data_dir, ingress="python", min_replicas={}, db_pool_actors=1, outbox_relays=1, postgres_standbys=0
    )
    try:
        yield settings, up(settings, echo=lambda _: None)
    finally:
        down(settings, echo=lambda _: None)
        shutil.rmtree(temp_dir_for(data_dir), ignore_errors=True)
        shutil.rmtree(data_dir, ignore_errors=True)


def test_serves_https_with_the_local_ca_and_no_tls_front(python_ingress: tuple[Settings, Runtime]) -> None:
    settings, runtime = python_ingress
    assert runtime.gateway_url == f"https://127.0.0.1:{settings.gateway_port}"
    assert runtime.ca_file is not None
    response = httpx.get(runtime.gateway_url + "/readyz", verify=runtime.verify(), timeout=15)
    assert response.status_code == 200 and response.json()["status"] == "ready"
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{settings.gateway_port}/healthz", timeout=10)
    components = {c["name"] for c in status(settings)["components"]}
    assert "front" not in components  # no TLS front in this mode


def test_a_user_registers_and_reads_their_profile_through_it(python_ingress: tuple[Settings, Runtime]) -> None:
    _, runtime = python_ingress
    with httpx.Client(base_url=runtime.gateway_url, verify=runtime.verify(), timeout=30) as client:
        credentials = {"email": "python-ingress@example.com", "password": "a quite long passphrase 7"}
        assert client.post("/v1/auth/register", json=credentials).status_code == 201
        login = client.post("/v1/auth/login", json=credentials)
        assert login.status_code == 200
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        # The profile's email comes with the `registered` event (outbox -> Kafka -> the users service): null until
        # then, as the API documents. Bounded wait; typically well under a second.
        deadline = time.monotonic() + 30
        while True:
            me = client.get("/v1/users/me", headers=headers)
            assert me.status_code == 200, me.text
            if me.json()["email"] is not None or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert me.json()["email"] == credentials["email"]
