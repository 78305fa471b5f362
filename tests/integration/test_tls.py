"""HTTPS at the edge: strata's TLS front, with the certificate of the local CA strata made for this system.

These tests talk to the front as outside clients do: curl and openssl, not strata's own code.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from strata.cluster._ray import temp_dir_for
from tests.conftest import System

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("curl") is None or shutil.which("openssl") is None, reason="needs curl"),
]


def _port(system: System) -> int:
    port = urlsplit(system.runtime.gateway_url).port
    assert port is not None
    return port


def test_curl_with_the_local_ca_gets_readyz_over_https(system: System) -> None:
    ca = system.runtime.ca_file
    assert ca is not None and ca == system.settings.data_dir.resolve() / "tls" / "ca.pem" and ca.exists()
    result = subprocess.run(
        ["curl", "--silent", "--show-error", "--fail", "--include", "--cacert", str(ca),
         f"https://127.0.0.1:{_port(system)}/readyz"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.partition("\n\n")  # text mode turns CRLF into LF
    assert '"status":"ready"' in body
    headers = head.lower()
    assert "strict-transport-security: max-age=63072000" in headers
    assert "server: uvicorn" not in headers  # no internal name


def test_without_the_ca_curl_refuses_the_certificate(system: System) -> None:
    result = subprocess.run(
        ["curl", "--silent", "--fail", f"https://127.0.0.1:{_port(system)}/readyz"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 60  # "peer certificate cannot be authenticated with known CA certificates"


def test_plain_http_on_the_https_port_fails(system: System) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{_port(system)}/readyz", timeout=10)


def _handshake(system: System, *protocol: str) -> subprocess.CompletedProcess[str]:
    # SECLEVEL=0 lets this client offer old protocols at all: any refusal then comes from the server.
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{_port(system)}", "-servername", "localhost",
         "-CAfile", str(system.runtime.ca_file), "-cipher", "DEFAULT@SECLEVEL=0", *protocol],
        input="", capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("protocol", ["-tls1_1", "-tls1"])
def test_tls_older_than_1_2_is_refused_by_the_server(system: System, protocol: str) -> None:
    old = _handshake(system, protocol)
    assert old.returncode != 0
    assert "alert protocol version" in old.stdout + old.stderr  # the server's alert, not a client-side refusal


@pytest.mark.parametrize(("protocol", "name"), [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")])
def test_tls_1_2_and_1_3_are_accepted_with_a_verified_chain(system: System, protocol: str, name: str) -> None:
    result = _handshake(system, protocol)
    assert result.returncode == 0, result.stderr
    assert f"Protocol  : {name}" in result.stdout or f"Protocol: {name}" in result.stdout or name in result.stdout
    assert "Verify return code: 0 (ok)" in result.stdout


def test_weak_tls_1_2_ciphers_are_refused(system: System) -> None:
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{_port(system)}", "-tls1_2",
         "-cipher", "AES128-SHA:DES-CBC3-SHA@SECLEVEL=0"],
        input="", capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "handshake failure" in result.stdout + result.stderr


def test_http2_is_offered(system: System) -> None:
    result = subprocess.run(
        ["curl", "--silent", "--http2", "--cacert", str(system.runtime.ca_file), "--output", "/dev/null",
         "--write-out", "%{http_version}", f"https://localhost:{_port(system)}/healthz"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.stdout == "2", result.stderr


def test_a_malformed_request_id_is_replaced_once_not_echoed(system: System) -> None:
    with system.client() as client:
        response = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces!"})
    ids = response.headers.get_list("x-request-id")
    assert len(ids) == 1 and "bad" not in ids[0], ids


def test_headers_too_large_get_431_problem_json_at_the_front_not_html(system: System) -> None:
    with system.client() as client:
        large = client.get("/healthz", headers={"X-Padding": "a" * 60 * 1024})
        fits = client.get("/healthz", headers={"X-Padding": "a" * 8 * 1024})

    assert large.status_code == 431, large.text[:200]
    assert large.headers["content-type"] == "application/problem+json"
    assert "<html" not in large.text.lower()
    body = large.json()
    assert body["status"] == 431 and body["type"].endswith("/header-fields-too-large")
    assert body["request_id"] == large.headers["x-request-id"]
    assert fits.status_code == 200


def test_serve_s_own_timeout_header_does_not_reach_serve(system: System) -> None:
    # Serve answers a plain-text 408 when this header's budget runs out; through the front it has no effect.
    with system.client() as client:
        response = client.get("/readyz", headers={"X-Request-Timeout-Seconds": "0.000001"})
    assert response.status_code == 200


def test_when_serve_s_haproxy_dies_clients_get_a_503_problem_and_service_comes_back(system: System) -> None:
    config = str(temp_dir_for(system.settings.data_dir.resolve()) / "haproxy")
    serve_haproxy = [
        p
        for p in psutil.process_iter(["name", "cmdline"])
        if p.info["name"] == "haproxy" and config in " ".join(p.info["cmdline"] or [])
    ]
    assert len(serve_haproxy) == 1, serve_haproxy
    serve_haproxy[0].kill()
    serve_haproxy[0].wait(10)
    with system.client() as client:
        refused = client.get("/healthz")
        assert refused.status_code == 503, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["request_id"] == refused.headers["x-request-id"]
        deadline = time.monotonic() + 60  # Serve's HAProxy manager starts it again
        while client.get("/healthz").status_code != 200:
            assert time.monotonic() < deadline, "Serve's HAProxy did not come back within 60 s"
            time.sleep(0.5)
