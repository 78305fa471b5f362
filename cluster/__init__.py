"""Running strata: embedded PostgreSQL and Kafka, the local Ray head, Serve deployment, the CLI."""

from strata.cluster._errors import ClusterError, PortInUse, PreflightError, StartupError, ToolMissing, Unreachable
from strata.cluster._lifecycle import down, migrate_async, start_component, status, stop_component, up
from strata.cluster._runtime import Runtime, resolve, settings_env

__all__ = [
    "ClusterError",
    "PortInUse",
    "PreflightError",
    "Runtime",
    "StartupError",
    "ToolMissing",
    "Unreachable",
    "down",
    "migrate_async",
    "resolve",
    "settings_env",
    "start_component",
    "status",
    "stop_component",
    "up",
]
