"""The gateway's certificate: the operator's, or one issued by a local CA that strata makes once.

With no ``tls_certfile``/``tls_keyfile`` in the settings, ``strata up`` creates
under ``<data_dir>/tls/``:

- ``ca.pem``/``ca-key.pem``: a local certificate authority (ECDSA P-256, ten years);
- ``server.pem``/``server-key.pem``: a server certificate it signs for ``localhost``,
  ``127.0.0.1``, ``::1`` and the configured gateway host (ECDSA P-256, 397 days,
  the longest lifetime browsers accept);
- ``server-bundle.pem``: key and certificate in one file, as HAProxy reads them.

Later starts reuse them, and issue a new server certificate from the same CA only when
the old one expires within 30 days or no longer names the gateway host. Clients trust
``ca.pem`` (``curl --cacert .strata/tls/ca.pem``). Private keys are written mode 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from strata.cluster._errors import ClusterError
from strata.schemas import Settings

_CA_DAYS = 3650
_SERVER_DAYS = 397
_RENEW_BEFORE = dt.timedelta(days=30)
_WILDCARD_HOSTS = ("", "0.0.0.0", "::")


class TlsError(ClusterError):
    """The configured certificate or key cannot be used."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of the public endpoint; ``ca`` is set when strata's local CA issued the certificate."""

    certfile: Path
    keyfile: Path
    bundle: Path  # key + certificate chain in one file (HAProxy's ``crt``)
    ca: Path | None = None


def tls_dir(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "tls"


def server_names(settings: Settings) -> list[str]:
    """Names the server certificate covers: loopback, and the gateway host when it is a specific one."""
    names = ["localhost", "127.0.0.1", "::1"]
    if settings.gateway_host not in _WILDCARD_HOSTS and settings.gateway_host not in names:
        names.append(settings.gateway_host)
    return names


def ensure_certificate(settings: Settings) -> TlsFiles:
    """The operator's files when configured (checked, bundled for HAProxy), else strata's local CA's."""
    directory = tls_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    if settings.tls_certfile is not None and settings.tls_keyfile is not None:
        return _operator_files(settings.tls_certfile, settings.tls_keyfile, directory / "server-bundle.pem")
    ca_key, ca_cert = _ensure_ca(directory)
    files = TlsFiles(
        certfile=directory / "server.pem",
        keyfile=directory / "server-key.pem",
        bundle=directory / "server-bundle.pem",
        ca=directory / "ca.pem",
    )
    names = server_names(settings)
    if not _still_good(files.certfile, names) or not files.keyfile.exists() or not files.bundle.exists():
        _issue_server(files, ca_key, ca_cert, names)
    return files


def _operator_files(certfile: Path, keyfile: Path, bundle: Path) -> TlsFiles:
    try:
        cert_pem = certfile.read_bytes()
        key_pem = keyfile.read_bytes()
    except OSError as exc:
        raise TlsError(f"cannot read the TLS files: {exc.strerror}: {exc.filename}") from exc
    try:
        certificate = x509.load_pem_x509_certificates(cert_pem)[0]
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise TlsError(f"{certfile} or {keyfile} is not a PEM certificate / unencrypted PEM private key") from exc
    if certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise TlsError(f"the key in {keyfile} does not belong to the certificate in {certfile}")
    _write_private(bundle, key_pem.rstrip(b"\n") + b"\n" + cert_pem)
    return TlsFiles(certfile=certfile.resolve(), keyfile=keyfile.resolve(), bundle=bundle)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, 0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _ensure_ca(directory: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    cert_path, key_path = directory / "ca.pem", directory / "ca-key.pem"
    if cert_path.exists() and key_path.exists():
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if isinstance(key, ec.EllipticCurvePrivateKey) and certificate.not_valid_after_utc - _now() > _RENEW_BEFORE:
            return key, certificate
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "strata"),
            x509.NameAttribute(NameOID.COMMON_NAME, "strata local CA"),
        ]
    )
    now = _now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key, certificate


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _still_good(cert_path: Path, names: list[str]) -> bool:
    if not cert_path.exists():
        return False
    certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    if certificate.not_valid_after_utc - _now() < _RENEW_BEFORE:
        return False
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return set(_san(names)) <= set(san)


def _issue_server(
    files: TlsFiles, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, names: list[str]
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_SERVER_DAYS))
        .add_extension(_san(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    chain = certificate.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM)
    key_pem = _key_pem(key)
    _write_private(files.keyfile, key_pem)
    files.certfile.write_bytes(chain)
    _write_private(files.bundle, key_pem + chain)
