"""The data service: deployment, typed client, domain logic and its own schema's migrations (``migrations/``)."""

from strata.serve_apps.data._client import DataClient
from strata.serve_apps.data._deployment import DataService, app

__all__ = ["DataClient", "DataService", "app"]
