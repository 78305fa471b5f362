"""The local CA and the server certificate strata issues, and the TLS front's config (checked by HAProxy itself)."""

from __future__ import annotations

import ssl
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr, ValidationError

from strata.cluster._front import haproxy_binary, render_config
from strata.cluster._tls import TlsError, ensure_certificate
from strata.schemas import Settings


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, secret_key=SecretStr("k" * 32), **overrides)  # type: ignore[arg-type]


def _names(path: Path) -> set[str]:
    certificate = x509.load_pem_x509_certificates(path.read_bytes())[0]
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(name.value) for name in san}


def test_a_local_ca_issues_a_loopback_certificate_that_verifies_against_it(tmp_path: Path) -> None:
    files = ensure_certificate(_settings(tmp_path))
    assert files.ca == tmp_path / "tls" / "ca.pem"
    assert _names(files.certfile) == {"localhost", "127.0.0.1", "::1"}
    # The chain verifies the way a client does it: a TLS context trusting only ca.pem accepts the server's cert.
    context = ssl.create_default_context(cafile=str(files.ca))
    context.load_cert_chain(str(files.certfile), str(files.keyfile))  # key and cert belong together
    for private in (files.keyfile, files.bundle, tmp_path / "tls" / "ca-key.pem"):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    assert stat.S_IMODE((tmp_path / "tls").stat().st_mode) == 0o700


def test_later_starts_reuse_the_files_and_a_new_host_gets_a_new_certificate_from_the_same_ca(tmp_path: Path) -> None:
    first = ensure_certificate(_settings(tmp_path))
    assert first.ca is not None
    ca, cert = first.ca.read_bytes(), first.certfile.read_bytes()
    again = ensure_certificate(_settings(tmp_path))
    assert again.certfile.read_bytes() == cert and again.ca is not None and again.ca.read_bytes() == ca
    moved = ensure_certificate(_settings(tmp_path, gateway_host="10.1.2.3"))
    assert moved.ca is not None and moved.ca.read_bytes() == ca
    assert "10.1.2.3" in _names(moved.certfile)


def test_an_operator_certificate_is_used_as_given_and_a_foreign_key_is_refused(tmp_path: Path) -> None:
    local = ensure_certificate(_settings(tmp_path / "issuer"))
    files = ensure_certificate(_settings(tmp_path, tls_certfile=local.certfile, tls_keyfile=local.keyfile))
    assert files.ca is None and files.certfile == local.certfile.resolve()
    assert files.bundle.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    other = tmp_path / "other-key.pem"
    other.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(TlsError, match="does not belong"):
        ensure_certificate(_settings(tmp_path, tls_certfile=local.certfile, tls_keyfile=other))
    with pytest.raises(TlsError, match="cannot read"):
        ensure_certificate(_settings(tmp_path, tls_certfile=tmp_path / "nope.pem", tls_keyfile=other))


def test_certificate_and_key_come_in_pairs(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="both tls_certfile and tls_keyfile"):
        _settings(tmp_path, tls_certfile=tmp_path / "cert.pem")


def test_the_front_config_is_valid_haproxy_and_allows_tls_1_2_or_newer_only(tmp_path: Path) -> None:
    settings = _settings(tmp_path, gateway_port=8443, serve_port=8001)
    files = ensure_certificate(settings)
    config = render_config(settings, files, settings.edge_token())
    assert "ssl-min-ver TLSv1.2" in config
    assert "server serve 127.0.0.1:8001" in config
    assert f"set-header X-Strata-Edge {settings.edge_token()}" in config
    assert "set-header X-Forwarded-For %[src]" in config  # replaces what the client sent
    path = tmp_path / "front.cfg"
    path.write_text(config)
    check = subprocess.run([haproxy_binary(), "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr


def test_the_edge_token_is_derived_from_the_master_secret(tmp_path: Path) -> None:
    one, two = _settings(tmp_path), Settings(_env_file=None, secret_key=SecretStr("x" * 32))
    assert one.edge_token() == _settings(tmp_path).edge_token() != two.edge_token()
    assert "k" * 32 not in one.edge_token()
    with pytest.raises(ValueError, match="master secret"):
        Settings(_env_file=None).edge_token()


def test_the_front_drops_the_request_ids_the_gateway_would_refuse_and_serve_s_timeout_header(tmp_path: Path) -> None:
    from strata.cluster._front import REQUEST_ID_PATTERN
    from strata.serve_apps.gateway._hygiene import REQUEST_ID

    assert REQUEST_ID.pattern == REQUEST_ID_PATTERN
    settings = _settings(tmp_path)
    config = render_config(settings, ensure_certificate(settings), settings.edge_token())
    assert f"acl request_id_ok req.hdr(x-request-id) -m reg {REQUEST_ID_PATTERN}" in config
    assert "http-request del-header X-Request-Timeout-Seconds" in config


def test_only_plain_text_errors_from_behind_the_front_are_rewritten(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    config = render_config(settings, ensure_certificate(settings), settings.edge_token())
    rewrites = [line for line in config.splitlines() if "http-response return" in line]
    assert len(rewrites) == 3 and all(line.rstrip().endswith("!json_body") for line in rewrites)
    assert "acl json_body res.hdr(content-type) -m beg application/" in config  # readyz's JSON 503 passes
