"""The gateway: the only HTTP-exposed application."""

from strata.serve_apps.gateway._deployment import Gateway, api, app

__all__ = ["Gateway", "api", "app"]
