"""The auth service: deployment, domain logic and its own schema's migrations (``migrations/``)."""

from strata.serve_apps.auth._deployment import AuthService, app

__all__ = ["AuthService", "app"]
