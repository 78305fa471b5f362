"""What the gateway's routes depend on, as ``Annotated`` aliases that keep the routes thin.

Each gateway replica makes one typed client per service it calls, once, in ``Gateway.__init__``, and keeps it on
``api.state``; a route names the client it needs (``users: UsersDep``) and FastAPI hands it over. The aliases add
nothing to the OpenAPI document: they read the request, no parameter of it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from strata.serve_apps.audit import AuditClient
from strata.serve_apps.users import UsersClient


def users_client(request: Request) -> UsersClient:
    """This replica's client of the users service."""
    client: UsersClient = request.app.state.users
    return client


def audit_client(request: Request) -> AuditClient:
    """This replica's client of the audit log."""
    client: AuditClient = request.app.state.audit
    return client


UsersDep = Annotated[UsersClient, Depends(users_client)]
AuditDep = Annotated[AuditClient, Depends(audit_client)]
