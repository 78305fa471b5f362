"""Running strata: embedded PostgreSQL and Kafka, the local Ray head, Serve deployment, the CLI."""

from strata.cluster._components import migrate_async
from strata.cluster._errors import ClusterError, PortInUse, PreflightError, StartupError, ToolMissing, Unreachable
from strata.cluster._lifecycle import down, start_component, stop_component, up
from strata.cluster._runtime import Runtime, resolve, settings_env
from strata.cluster._status import status

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
