"""The data service: deployments, domain logic and its own schema's migrations (``migrations/``); its contract, with
its typed clients, is :mod:`strata.contracts.data`."""

from strata.contracts import DataClient, StatsClient  # the contract's, kept here for scripts that import them here
from strata.serve_apps.data._deployment import DataService, app
from strata.serve_apps.data._processing import DataProcessing
from strata.serve_apps.data._users_events import apply_users_event

__all__ = ["DataClient", "DataProcessing", "DataService", "StatsClient", "app", "apply_users_event"]
