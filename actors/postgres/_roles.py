"""One PostgreSQL role per service, able to use only its own schema.

The admin DSN (``STRATA_DATABASE_URL``) is used by migrations alone. Each
service connects as ``strata_<service>``, whose password is derived from the
master secret (label ``postgres-role:<service>``): the `strata` command
derives it, and each service's processes are handed their own password alone.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from strata.actors.postgres._errors import map_asyncpg_errors
from strata.schemas import Settings, derive_secret, postgres_role_secret

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")


def check_service_name(service: str) -> str:
    """``service`` if it is a safe lower-case SQL identifier, else ``ValueError``."""
    if not _IDENTIFIER.match(service):
        raise ValueError(f"service name {service!r} must match {_IDENTIFIER.pattern}")
    return service


def service_role(service: str) -> str:
    return f"strata_{check_service_name(service)}"


def service_password(secret_key: str, service: str) -> str:
    """The password of ``service``'s role, derived from the master secret ``secret_key``."""
    return _password_text(derive_secret(secret_key, postgres_role_secret(service)))


def _password_text(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def dsn_with_credentials(dsn: str, user: str, password: str) -> str:
    """``dsn`` with its user and password replaced (host, port, database and query kept)."""
    parts = urlsplit(dsn)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _with_password(dsn: str, replacement: str | None) -> str:
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", "@" if replacement is None else f":{replacement}@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def redact_dsn(dsn: str) -> str:
    """``dsn`` with its password shown as ``***``, for messages and logs."""
    return _with_password(dsn, "***")


def strip_password(dsn: str) -> str:
    """``dsn`` with no password at all (user, server and database kept)."""
    return _with_password(dsn, None)


def admin_dsn(settings: Settings) -> str:
    if settings.database_url is None or not settings.database_url.get_secret_value():
        raise ValueError("STRATA_DATABASE_URL is not set (strata up sets it for the processes it starts)")
    return settings.database_url.get_secret_value()


def service_dsn(settings: Settings, service: str) -> str:
    """The DSN ``service`` connects with: its own role, on the admin DSN's server and database."""
    return dsn_with_credentials(admin_dsn(settings), *_service_credentials(settings, service))


def replica_dsn(settings: Settings, service: str, replica_url: str) -> str:
    """The DSN ``service`` reads a standby with: its own role (replicated from the primary) on ``replica_url``."""
    return dsn_with_credentials(replica_url, *_service_credentials(settings, service))


def _service_credentials(settings: Settings, service: str) -> tuple[str, str]:
    # From the master secret in the strata command; from the component's own credentials in its Ray workers.
    return service_role(service), _password_text(settings.secret(postgres_role_secret(service)))


async def ensure_service_role(conn: asyncpg.Connection, service: str, password: str) -> None:
    """Create or update the role of ``service`` and confine it to its own schema.

    Runs on an admin connection. The role may connect to the database and owns
    schema ``<service>``; it has no right on any other service's schema, and
    ``public`` is closed to everyone but the admin.
    """
    role = service_role(service)
    with map_asyncpg_errors():
        async with conn.transaction():
            # Serialise role creation across concurrent `strata up`/migrate runs.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('strata-roles'))")
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
            verb = "ALTER" if exists else "CREATE"
            # Identifiers and literals are quoted by the server's format(), never by string pasting.
            ddl = await conn.fetchval(
                f"SELECT format('{verb} ROLE %I LOGIN NOINHERIT PASSWORD %L', $1::text, $2::text)", role, password
            )
            await conn.execute(ddl)
            is_super = await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            if not is_super:
                # A CREATEROLE admin must be a member to create objects owned by the role.
                await conn.execute(await conn.fetchval("SELECT format('GRANT %I TO current_user', $1::text)", role))
            database = await conn.fetchval("SELECT current_database()")
            await conn.execute(
                await conn.fetchval("SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', $1::text)", database)
            )
            await conn.execute(
                await conn.fetchval(
                    "SELECT format('GRANT CONNECT ON DATABASE %I TO %I', $1::text, $2::text)", database, role
                )
            )
            await conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
            await conn.execute(
                await conn.fetchval(
                    "SELECT format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION %I', $1::text, $2::text)",
                    service,
                    role,
                )
            )
