"""Secrets derived from the master secret, one label each, so that a process can be handed only its own.

Every secret strata derives is ``derive_secret(master, label)``: an HMAC-SHA256 of the label under the master
secret, except for labels starting ``hkdf:``, which are RFC 5869 HKDF-SHA256 (no salt, the rest of the label as
``info``), as the signing keys' encryption key always was. The labels are the messages strata has always used, so
a data dir keeps every derived value.

Only the `strata` command holds the master secret. It hands each Serve application the secrets of its component
(:func:`~strata.schemas.component_secrets`: its database role's password, its Kafka principal's, and the further
labels its registry spec names), and nothing else; a process asks :meth:`~strata.schemas.Settings.secret` for a
label and is refused (:class:`SecretNotHeld`) when it was not given it. A new purpose is one label in a spec.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

SIGNING_KEY_ENCRYPTION = "hkdf:strata-auth-signing-key"
"""The AES-256-GCM key that encrypts the auth service's signing keys at rest (HKDF of the master secret)."""
REFRESH_CHILD = "strata refresh-token child v1"
"""The key a rotated refresh token's child is derived under (the auth service's retry grace window)."""
EDGE_TOKEN = "edge-token"
"""The TLS front's proof to the gateway (``X-Strata-Edge``)."""


class SecretNotHeld(ValueError):
    """A process asked for a derived secret it was not given (components hold only their own)."""


def postgres_role_secret(service: str) -> str:
    """The label of the password of ``service``'s PostgreSQL role (``strata_<service>``)."""
    return f"postgres-role:{service}"


def kafka_principal_secret(component: str) -> str:
    """The label of the password of ``component``'s Kafka principal (``strata-<component>``)."""
    return f"kafka-principal:{component}"


def key_secret(purpose: str) -> str:
    """The label of the 32-byte key for ``purpose`` (:meth:`~strata.schemas.Settings.derived_key`)."""
    return f"key:{purpose}"


CONSISTENCY_TOKEN_KEY = key_secret("consistency-token")
"""The key the gateway signs ``Strata-Consistency`` tokens with (the gateway alone holds it)."""


def derive_secret(master: str, label: str) -> bytes:
    """The 32 bytes derived from ``master`` for ``label`` (see the module docstring)."""
    if label.startswith("hkdf:"):
        # RFC 5869 with SHA-256, no salt (a zero key), one block: what cryptography's HKDF(salt=None) computes.
        prk = hmac.new(b"\0" * hashlib.sha256().digest_size, master.encode(), hashlib.sha256).digest()
        return hmac.new(prk, label.removeprefix("hkdf:").encode() + b"\x01", hashlib.sha256).digest()
    return hmac.new(master.encode(), label.encode(), hashlib.sha256).digest()


def credentials_file_of(data_dir: Path, component: str) -> Path:
    """Where the `strata` command writes ``component``'s own derived secrets (mode 0600, in a 0700 directory)."""
    return data_dir / "credentials" / f"{component}.json"
