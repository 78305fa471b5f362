"""`strata users ...`: the first administrator.

``create-admin`` works on the database directly, as each service's own role,
through each service's own units of work: the auth service's creates the
account (and records ``registered``), the users service's creates the profile
and sets its roles (and records ``roles_changed``). The auth service learns the
new roles from that event, as from any admin's change, so the account's tokens
carry ``admin`` within moments of the command, once strata is running.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import asyncpg
import typer

from strata.actors.postgres import UniqueViolation
from strata.cluster._cli_db import as_service, resolved_settings
from strata.cluster._errors import ClusterError
from strata.schemas import DomainError, Profile, Settings

ADMIN_ROLES = ["admin"]

users_app = typer.Typer(help="Users of strata: make the first administrator.", no_args_is_help=True)


@users_app.callback()
def users() -> None:
    """Users of strata: make the first administrator."""


def _read_password(password_stdin: bool) -> str:
    if not password_stdin:
        return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise ClusterError("no password on standard input")
    return password


async def make_admin(settings: Settings, email: str, password: str) -> tuple[str, bool]:
    """Make ``email`` an administrator: ``(user_id, created)``.

    An unknown email gets a new account with ``password`` (checked against the
    password policy); an existing account keeps its password and becomes admin.
    Running it twice changes nothing the second time.
    """
    from strata.serve_apps.auth import PasswordHasher, check_password_policy
    from strata.serve_apps.auth._passwords import check_email
    from strata.serve_apps.auth._service import create_account, read_account_by_email
    from strata.serve_apps.users._admin import set_roles
    from strata.serve_apps.users._profiles import ensure_profile

    try:
        normalized = check_email(email)
        account = await as_service(
            settings, "auth", lambda conn: read_account_by_email(conn, normalized), command="users"
        )
        created = False
        if account is None:
            check_password_policy(password, normalized)
            password_hash = await PasswordHasher.from_settings(settings).hash_async(password)
            try:
                account = await as_service(
                    settings, "auth", lambda conn: create_account(conn, normalized, password_hash), command="users"
                )
                created = True
            except UniqueViolation:  # registered meanwhile
                account = await as_service(
                    settings, "auth", lambda conn: read_account_by_email(conn, normalized), command="users"
                )
                assert account is not None
        user_id = str(account["user_id"])

        async def promote(conn: asyncpg.Connection) -> Profile:
            # The profile may not exist yet: the `registered` event completes it later, harmlessly.
            await ensure_profile(conn, user_id, normalized)
            return await set_roles(conn, user_id, ADMIN_ROLES, actor="system")

        await as_service(settings, "users", promote, command="users")
    except DomainError as exc:
        raise ClusterError(exc.detail or str(exc)) from exc
    return user_id, created


@users_app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Argument(help="Email of the administrator (a new account, or an existing one).")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of standard input.")
    ] = False,
) -> None:
    """Make EMAIL an administrator: a new account with the password you type (or pipe in with --password-stdin),
    or, if EMAIL has an account already, that account (its password unchanged). Prints the user id."""
    from strata.serve_apps.auth._passwords import check_email

    try:
        check_email(email)  # before asking for a password
    except DomainError as exc:
        raise ClusterError(exc.detail) from exc
    password = _read_password(password_stdin)
    user_id, created = asyncio.run(make_admin(resolved_settings(), email, password))
    typer.echo(user_id)
    if created:
        typer.echo(f"administrator {user_id} created; its tokens carry the admin role once strata is running", err=True)
    else:
        typer.echo(
            f"account {user_id} already existed: it is now an administrator (its password is unchanged)", err=True
        )
