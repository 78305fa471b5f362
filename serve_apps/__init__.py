"""strata's Serve applications: one package per component (gateway, auth, users, data, audit).

Each package holds its deployment, its typed client, its domain logic, its SQL and its schema's
migrations. What they share lives here, in private modules: the replica base (``_replica``), the
entry every service application is reached through (``_entry``), least-connection routing
(``_router``), the base of the typed clients (``_client``), fault injection for tests (``_faults``).

Callers outside these packages use this surface: a service's typed client from its package
(``strata.serve_apps.users.UsersClient``), and from here the router class Serve loads
(``cluster/serve.yaml`` names ``strata.serve_apps:LeastConnectionRouter``), the client base and the
handle of a service's deployment.
"""

from strata.serve_apps._client import ServiceClient, ServiceContractError
from strata.serve_apps._entry import service_handle
from strata.serve_apps._router import LeastConnectionRouter

__all__ = ["LeastConnectionRouter", "ServiceClient", "ServiceContractError", "service_handle"]
