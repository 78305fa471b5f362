"""The data service: deployment, typed client, domain logic and its own schema's migrations (``migrations/``)."""

from strata.serve_apps.data._client import DataClient
from strata.serve_apps.data._deployment import DataService, app
from strata.serve_apps.data._processing import DataProcessing, StatsClient
from strata.serve_apps.data._users_events import apply_users_event

__all__ = ["DataClient", "DataProcessing", "DataService", "StatsClient", "app", "apply_users_event"]
