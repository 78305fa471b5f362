"""What the gateway's routes depend on, as ``Annotated`` aliases that keep the routes thin.

Each gateway replica has one typed client per service it calls (:class:`ServiceClients`), kept on the app's
``state`` and made at its first use: making a client touches no Ray (its handle is looked up at its first call),
so the app also runs driven in process by a test, and a request refused before any call (an invalid body, a rate
limit) never reaches Ray. A route names the client it needs (``users: UsersDep``) and FastAPI hands it over. The
aliases add nothing to the OpenAPI document: they read the request, no parameter of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import State

from strata.contracts import AuditClient, AuthClient, DataClient, StatsClient, UsersClient


@dataclass(frozen=True, slots=True)
class ServiceClients:
    """The replica's clients, one per service it calls."""

    auth: AuthClient
    users: UsersClient
    data: DataClient
    audit: AuditClient
    stats: StatsClient


def service_clients(state: State) -> ServiceClients:
    """The replica's :class:`ServiceClients`, made at the first use and kept on ``state``."""
    clients: ServiceClients | None = getattr(state, "service_clients", None)
    if clients is None:
        clients = state.service_clients = ServiceClients(
            AuthClient(), UsersClient(), DataClient(), AuditClient(), StatsClient()
        )
    return clients


def auth_client(request: Request) -> AuthClient:
    """This replica's client of the auth service."""
    return service_clients(request.app.state).auth


def users_client(request: Request) -> UsersClient:
    """This replica's client of the users service."""
    return service_clients(request.app.state).users


def data_client(request: Request) -> DataClient:
    """This replica's client of the data service."""
    return service_clients(request.app.state).data


def stats_client(request: Request) -> StatsClient:
    """This replica's client of the data service's processing deployment."""
    return service_clients(request.app.state).stats


def audit_client(request: Request) -> AuditClient:
    """This replica's client of the audit log."""
    return service_clients(request.app.state).audit


AuthDep = Annotated[AuthClient, Depends(auth_client)]
UsersDep = Annotated[UsersClient, Depends(users_client)]
DataDep = Annotated[DataClient, Depends(data_client)]
AuditDep = Annotated[AuditClient, Depends(audit_client)]
StatsDep = Annotated[StatsClient, Depends(stats_client)]
