"""strata's Serve applications: one package per component (gateway, auth, users, data, audit).

Each package holds its deployment, its domain logic, its SQL and its schema's migrations; what callers
need of a service (its Protocol of operations and its typed client) is its contract, in
:mod:`strata.contracts`, which imports none of this. What the packages share lives here, in private
modules: the replica base (``_replica``), the entry every service application is reached through
(``_entry``), least-connection routing (``_router``), fault injection for tests (``_faults``).

From here Serve loads the router class (``cluster/serve.yaml`` names
``strata.serve_apps:LeastConnectionRouter``). The client base and the handle of a service's deployment
are re-exported from :mod:`strata.contracts` for scripts written against this package.
"""

from strata.contracts import ServiceClient, ServiceContractError, service_handle
from strata.serve_apps._router import LeastConnectionRouter

__all__ = ["LeastConnectionRouter", "ServiceClient", "ServiceContractError", "service_handle"]
