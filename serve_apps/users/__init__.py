"""The users service: profiles, roles and their permissions (data, not code), in schema ``users``."""

from strata.serve_apps.users._deployment import UsersService, app

__all__ = ["UsersService", "app"]
