"""strata's service contracts: what a caller needs to call a service, and nothing of its server.

One module per service (:mod:`~strata.contracts.auth`, :mod:`~strata.contracts.users`, :mod:`~strata.contracts.data`,
:mod:`~strata.contracts.audit`), each holding a ``typing.Protocol`` of the service's operations (``UsersOperations``)
and its typed client (``UsersClient``); the models they exchange are :mod:`strata.schemas`'. The service's deployment
implements the Protocol and the client offers it, both checked by mypy, and each client call names the Protocol's
function (``self._call(UsersOperations.get_profile, user_id)``), so a call's signature is written once.

This package imports no server code: no service package, no deployment base, no database module (asyncpg,
:mod:`strata.actors.postgres`). The gateway, the CLI, scripts and tests import clients from here; the import contracts
of ``pyproject.toml`` keep it so. It sits between :mod:`strata.serve_apps` and :mod:`strata.actors` in the layers:
the services import it to implement it, and it uses only the read scope of :mod:`strata.actors` and the models.
"""

from strata.contracts._client import (
    PROCESS_SCOPE,
    ReplicaOperations,
    ServiceClient,
    ServiceContractError,
)
from strata.contracts._hop import (
    CONSISTENCY_ARGUMENT,
    DEFAULT_RETRY_AFTER_S,
    Consistent,
    ReadAfter,
    refused_as_unavailable,
    retry_after_of,
    service_handle,
)
from strata.contracts.audit import AuditClient, AuditOperations
from strata.contracts.auth import AuthClient, AuthOperations
from strata.contracts.data import DataClient, DataOperations, StatsClient, StatsOperations
from strata.contracts.users import UsersClient, UsersOperations

__all__ = [
    "CONSISTENCY_ARGUMENT",
    "DEFAULT_RETRY_AFTER_S",
    "PROCESS_SCOPE",
    "AuditClient",
    "AuditOperations",
    "AuthClient",
    "AuthOperations",
    "Consistent",
    "DataClient",
    "DataOperations",
    "ReadAfter",
    "ReplicaOperations",
    "ServiceClient",
    "ServiceContractError",
    "StatsClient",
    "StatsOperations",
    "UsersClient",
    "UsersOperations",
    "refused_as_unavailable",
    "retry_after_of",
    "service_handle",
]
