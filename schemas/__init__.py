"""Models shared across the wire and across processes: settings, API bodies, problem details, events."""

from strata.schemas._errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidCredentials,
    InvalidToken,
    ResourceNotFound,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
)
from strata.schemas._settings import SERVICES, DatabaseBackend, Settings

__all__ = [
    "SERVICES",
    "Conflict",
    "DatabaseBackend",
    "DomainError",
    "Forbidden",
    "InvalidCredentials",
    "InvalidToken",
    "ResourceNotFound",
    "Settings",
    "TooManyRequests",
    "Unauthorized",
    "Unprocessable",
]
