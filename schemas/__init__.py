"""Models shared across the wire and across processes: settings, API bodies, problem details, events."""

from strata.schemas._errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidCredentials,
    InvalidToken,
    ResourceNotFound,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
)
from strata.schemas._settings import APPS, SERVICES, DatabaseBackend, Settings

__all__ = [
    "APPS",
    "SERVICES",
    "Conflict",
    "DatabaseBackend",
    "DomainError",
    "Forbidden",
    "InvalidCredentials",
    "InvalidToken",
    "ResourceNotFound",
    "ServiceUnavailable",
    "Settings",
    "TooManyRequests",
    "Unauthorized",
    "Unprocessable",
]
