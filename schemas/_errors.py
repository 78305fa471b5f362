"""Errors a client caused or must act on, raised by services and answered by the gateway as problem+json.

::

    DomainError                    status 400; ``slug`` makes the stable problem ``type``
    ├── Unauthorized               401: no, bad or expired credentials
    │   ├── InvalidCredentials     wrong email or password (one answer for both)
    │   └── InvalidToken           a bad access or refresh token; ``error`` goes to WWW-Authenticate
    ├── Forbidden                  403: authenticated, but the route's permission is missing
    ├── InvalidCursor              400: a page cursor strata did not make for this listing (tampered, stale)
    ├── InvalidConsistencyToken    400: a ``Strata-Consistency`` header that is no token (malformed, or too long)
    ├── ResourceNotFound           404
    │   ├── UserNotFound           no such user (or the id is no UUID), at the users service
    │   ├── CollectionNotFound     no such collection, or one the caller may not see, at the data service
    │   └── ItemNotFound           no such item in that collection, at the data service
    ├── Conflict                   409: e.g. the email is taken, or an Idempotency-Key's first request still runs
    ├── PreconditionFailed         412: If-Match names a version that is no longer the current one
    ├── Unprocessable              422: valid JSON, refused by a rule (e.g. the password policy)
    ├── PreconditionRequired       428: a change that must say which version it read (If-Match) did not
    ├── TooManyRequests            429: ``retry_after`` seconds before trying again
    └── ServiceUnavailable         503: a service is at capacity or down; ``retry_after`` seconds

They pickle (they cross Ray calls from a service to the gateway) and carry no
internal detail: ``detail`` is written for the client.
"""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    """Base: ``status``, ``slug`` and ``title`` are fixed per class; ``detail`` is for the client."""

    status: ClassVar[int] = 400
    slug: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad Request"

    def __init__(self, detail: str = "", *, retry_after: float | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.retry_after = retry_after
        self.extra = extra

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.detail, self.retry_after, self.extra))


def _rebuild(cls: type[DomainError], detail: str, retry_after: float | None, extra: dict[str, Any]) -> DomainError:
    return cls(detail, retry_after=retry_after, **extra)


class Unauthorized(DomainError):
    status = 401
    slug = "unauthorized"
    title = "Unauthorized"


class InvalidCredentials(Unauthorized):
    slug = "invalid-credentials"
    title = "Invalid email or password"


class InvalidToken(Unauthorized):
    """``extra["error"]`` is the RFC 6750 error code (``invalid_token``) for ``WWW-Authenticate``."""

    slug = "invalid-token"
    title = "Invalid token"


class Forbidden(DomainError):
    status = 403
    slug = "forbidden"
    title = "Forbidden"


class ResourceNotFound(DomainError):
    status = 404
    slug = "not-found"
    title = "Not Found"


class UserNotFound(ResourceNotFound):
    """No profile with that id; the users service's own "not found" (an id that is no UUID names no user either)."""


class CollectionNotFound(ResourceNotFound):
    """No collection with that id, or one the caller may not see (a stranger cannot tell the two apart)."""


class ItemNotFound(ResourceNotFound):
    """No item with that id in that collection (an id that is no UUID names no item either)."""


class InvalidCursor(DomainError):
    """A page cursor strata did not make for this listing: garbage, tampered with, or from another query."""

    slug = "invalid-cursor"
    title = "Invalid cursor"


class InvalidConsistencyToken(DomainError):
    """A ``Strata-Consistency`` request header that is no token (``0/16B3748.<mac>``): malformed or too long. A
    well-formed one strata did not sign is ignored, not refused."""

    slug = "invalid-consistency-token"
    title = "Invalid consistency token"


class Conflict(DomainError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class PreconditionFailed(DomainError):
    """``If-Match`` names no current version of the resource: someone changed it since the caller read it."""

    status = 412
    slug = "precondition-failed"
    title = "Precondition Failed"


class PreconditionRequired(DomainError):
    """A change that must be conditional (``If-Match``) was sent without its condition."""

    status = 428
    slug = "precondition-required"
    title = "Precondition Required"


class Unprocessable(DomainError):
    status = 422
    slug = "unprocessable"
    title = "Unprocessable Content"


class TooManyRequests(DomainError):
    status = 429
    slug = "too-many-requests"
    title = "Too Many Requests"


class ServiceUnavailable(DomainError):
    """The service behind the gateway refused the call (its queue is full) or has no replica: retry later."""

    status = 503
    slug = "service-unavailable"
    title = "Service Unavailable"
