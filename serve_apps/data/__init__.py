"""The data service: deployment, domain logic and its own schema's migrations (``migrations/``)."""

from strata.serve_apps.data._deployment import DataService, app

__all__ = ["DataService", "app"]
