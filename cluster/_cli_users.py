"""`strata users ...`: the first administrator.

``create-admin`` acts through the services' typed clients, as an administrator's request would: the auth service
makes sure the account exists (creating it records ``registered``), the users service makes sure its profile
exists, sets its roles (recording ``roles_changed``) and enables it if it was disabled (recording ``enabled``). The
auth service learns the new roles and the enabling from those events, as from any admin's change, so the account
logs in with ``admin`` in its tokens within moments of the command: the way back when no admin can log in.

An email that has an account already is refused unless the operator passes ``--existing``: anyone can register any
email through the public API, with a password of their choosing, before the operator runs the command. With
``--existing`` the account is taken over: it gets the password given now and every session of it ends (refresh
tokens refused, access tokens cut off at the edge as after a password change), before it becomes admin.
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


async def make_admin(email: str, password: str, *, existing: bool = False) -> EnsuredAccount:
    """Make ``email`` an administrator; the account, and whether it was created now.

    An unknown email gets a new account with ``password`` (checked against the password policy). An existing
    account is refused (``Conflict``, ``account-exists``) unless ``existing``: then it gets ``password``, its
    sessions end, and it becomes admin, enabled if it was disabled.
    """
    from strata.contracts import AuthClient, UsersClient

    account = await AuthClient().ensure_account(email, password, existing=existing)
    users = UsersClient()
    # The profile may not exist yet (its `registered` event is on its way): reading it makes it.
    await users.get_profile(account.user_id)
    await users.set_roles(account.user_id, ADMIN_ROLES, actor="system")
    await users.enable(account.user_id, actor="system")
    return account


@users_app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Argument(help="Email of the administrator (a new account, or with --existing one).")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of standard input.")
    ] = False,
    existing: Annotated[
        bool,
        typer.Option(
            "--existing",
            help="EMAIL has an account already: take it over (it gets the password given now, its sessions end).",
        ),
    ] = False,
) -> None:
    """Make EMAIL an administrator: a new account with the password you type (or pipe in with --password-stdin).
    An EMAIL that has an account already is refused, unless --existing: then that account gets the password given
    and every session of it ends before it becomes admin. Prints the user id."""
    from strata.serve_apps.auth import check_email

    try:
        check_email(email)  # before asking for a password
    except DomainError as exc:
        raise ClusterError(exc.detail) from exc
    password = _read_password(password_stdin)
    account = with_services(lambda: make_admin(email, password, existing=existing))
    typer.echo(account.user_id)
    if account.created:
        typer.echo(f"administrator {account.user_id} created; its tokens carry the admin role within moments", err=True)
    else:
        typer.echo(
            f"account {account.user_id} already existed: it is now an administrator with the password given;"
            f" {account.revoked_sessions} session(s) of it ended",
            err=True,
        )
