"""The users service: profiles, roles and their permissions (data, not code), in schema ``users``."""

from strata.contracts import UsersClient  # its contract's, kept here for scripts that import it from here
from strata.serve_apps.users._deployment import UsersService, app
from strata.serve_apps.users._profiles import apply_auth_event

__all__ = ["UsersClient", "UsersService", "app", "apply_auth_event"]
