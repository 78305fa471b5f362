"""`strata users ...`: the first administrator.

``create-admin`` acts through the services' typed clients, as an administrator's request would: the auth service
makes sure the account exists (creating it records ``registered``), the users service makes sure its profile
exists, sets its roles (recording ``roles_changed``) and enables it if it was disabled (recording ``enabled``). The
auth service learns the new roles and the enabling from those events, as from any admin's change, so the account
logs in with ``admin`` in its tokens within moments of the command: the way back when no admin can log in.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from strata.cluster._cli_services import with_services
from strata.cluster._errors import ClusterError
from strata.schemas import DomainError, EnsuredAccount

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


async def make_admin(email: str, password: str) -> EnsuredAccount:
    """Make ``email`` an administrator; the account, and whether it was created now.

    An unknown email gets a new account with ``password`` (checked against the
    password policy); an existing account keeps its password, becomes admin and
    is enabled if it was disabled. Running it twice changes nothing the second time.
    """
    from strata.serve_apps.auth import AuthClient
    from strata.serve_apps.users import UsersClient

    account = await AuthClient().ensure_account(email, password)
    users = UsersClient()
    # The profile may not exist yet (its `registered` event is on its way): reading it makes it.
    await users.get_profile(account.user_id)
    await users.set_roles(account.user_id, ADMIN_ROLES, actor="system")
    await users.enable(account.user_id, actor="system")
    return account


@users_app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Argument(help="Email of the administrator (a new account, or an existing one).")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of standard input.")
    ] = False,
) -> None:
    """Make EMAIL an administrator: a new account with the password you type (or pipe in with --password-stdin),
    or, if EMAIL has an account already, that account (its password unchanged). Prints the user id."""
    from strata.serve_apps.auth import check_email

    try:
        check_email(email)  # before asking for a password
    except DomainError as exc:
        raise ClusterError(exc.detail) from exc
    password = _read_password(password_stdin)
    account = with_services(lambda: make_admin(email, password))
    typer.echo(account.user_id)
    if account.created:
        typer.echo(f"administrator {account.user_id} created; its tokens carry the admin role within moments", err=True)
    else:
        typer.echo(
            f"account {account.user_id} already existed: it is now an administrator (its password is unchanged)",
            err=True,
        )
