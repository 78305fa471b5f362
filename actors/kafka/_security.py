"""Who a strata process is to Kafka: its principal, and the aiokafka options that authenticate it.

Every Kafka client strata makes (relays, consumers, the gateway's revocation
feed, the CLI, the example consumer) takes its connection options from
:func:`client_options`, so one place decides how strata authenticates:

- With a SASL protocol and no ``kafka_username`` (always so with the embedded
  broker), each component is its own principal, ``strata-<component>``, whose
  password is derived from the master secret like its database role's. The
  broker's ACLs (:mod:`~strata.actors.kafka._acls`) let it write only its own
  topics and read only those of its consumer groups.
- The admin principal ``strata-admin`` (topics, ACLs, principals) has a
  password of its own, ``kafka_admin_password``, which Ray workers never get.
- With ``kafka_username`` set, every client uses that one principal of an
  existing Kafka; what it may do is its operator's business.
"""

from __future__ import annotations

import ssl
from typing import Any

from strata.schemas import SecretNotHeld, Settings, derive_secret, kafka_principal_secret

ADMIN = "admin"
"""The component name of the admin principal (``strata-admin``)."""
BROKER = "broker"
"""The embedded broker's own principal (``strata-broker``): inter-broker and controller traffic only."""
PRINCIPAL_PREFIX = "strata-"


class KafkaCredentialsMissing(RuntimeError):
    """A client needs a password this process was not given (the admin's, in a Ray worker)."""


def principal_name(component: str) -> str:
    """The Kafka username of a strata component (``auth`` -> ``strata-auth``)."""
    return f"{PRINCIPAL_PREFIX}{component}"


def principal_password(secret_key: str, component: str) -> str:
    """The password of ``strata-<component>``: an HMAC of the master secret, so nothing needs storing."""
    return derive_secret(secret_key, kafka_principal_secret(component)).hex()


def uses_sasl(settings: Settings) -> bool:
    return settings.kafka_security_protocol.startswith("SASL_")


def credentials(settings: Settings, component: str) -> tuple[str, str]:
    """``(username, password)`` that ``component`` authenticates with."""
    if settings.kafka_username is not None and settings.kafka_password is not None:
        return settings.kafka_username, settings.kafka_password.get_secret_value()
    if component == ADMIN:
        if settings.kafka_admin_password is None:
            raise KafkaCredentialsMissing(
                "this process has no Kafka admin password (kafka_admin_password): admin work runs from the strata"
                " command, never in a Ray worker"
            )
        return principal_name(ADMIN), settings.kafka_admin_password.get_secret_value()
    try:
        # From the master secret in the strata command; a Ray worker holds its own component's password alone.
        return principal_name(component), settings.secret(kafka_principal_secret(component)).hex()
    except SecretNotHeld as exc:
        raise KafkaCredentialsMissing(f"no password of {principal_name(component)} here: {exc}") from exc


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """The context that verifies the brokers' certificates (``kafka_ca_file``, else the system's CAs)."""
    if settings.kafka_ca_file is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=str(settings.kafka_ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise KafkaCredentialsMissing(f"cannot read kafka_ca_file {settings.kafka_ca_file}: {exc}") from exc


def client_options(settings: Settings, component: str) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client acting as ``component`` (``admin`` for the admin principal)."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl_context(settings)
    if uses_sasl(settings):
        username, password = credentials(settings, component)
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism, sasl_plain_username=username, sasl_plain_password=password
        )
    return options
