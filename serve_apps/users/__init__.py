"""The users service: deployment, domain logic and its own schema's migrations (``migrations/``)."""

from strata.serve_apps.users._deployment import UsersService, app

__all__ = ["UsersService", "app"]
