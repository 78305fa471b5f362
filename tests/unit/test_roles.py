from __future__ import annotations

import pytest

from strata.actors.postgres import redact_dsn, service_dsn, service_password, service_role
from strata.actors.postgres._roles import dsn_with_credentials
from strata.schemas import Settings


def test_each_service_gets_its_own_role_and_a_stable_derived_password() -> None:
    assert service_role("users") == "strata_users"
    assert service_password("k", "users") == service_password("k", "users")
    assert service_password("k", "users") != service_password("k", "data")
    assert service_password("k", "users") != service_password("other", "users")


@pytest.mark.parametrize("name", ["Users", "users; DROP ROLE x", "", "1abc", "a" * 60])
def test_service_names_must_be_safe_identifiers(name: str) -> None:
    with pytest.raises(ValueError, match="must match"):
        service_role(name)


def test_service_dsn_keeps_server_and_database_and_swaps_credentials() -> None:
    settings = Settings(
        _env_file=None,
        database_url="postgresql://admin:adminpw@db.example:6543/app?sslmode=require",  # type: ignore[arg-type]
        secret_key="key",  # type: ignore[arg-type]
    )
    dsn = service_dsn(settings, "data")
    assert dsn.startswith("postgresql://strata_data:")
    assert dsn.endswith("@db.example:6543/app?sslmode=require")
    assert "adminpw" not in dsn


def test_credentials_are_url_quoted() -> None:
    assert dsn_with_credentials("postgresql://a@h:1/d", "u", "p@ss/w:rd") == "postgresql://u:p%40ss%2Fw%3Ard@h:1/d"


def test_redact_dsn_hides_the_password() -> None:
    assert redact_dsn("postgresql://u:hunter2@h:1/d") == "postgresql://u:***@h:1/d"
    assert redact_dsn("postgresql://h:1/d") == "postgresql://h:1/d"
