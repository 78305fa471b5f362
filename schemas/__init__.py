"""Models shared across the wire and across processes: settings, API bodies, problem details, events."""

from strata.schemas._settings import SERVICES, DatabaseBackend, Settings

__all__ = ["SERVICES", "DatabaseBackend", "Settings"]
