"""Every consumer group strata runs, with the topics it reads: `strata up` creates their dead-letter topics,
`strata status` shows their lag."""

from __future__ import annotations

from strata.schemas.events import topics

AUDIT = "audit"
AUTH = "auth"
USERS = "users"


def consumer_groups() -> dict[str, list[str]]:
    """``{group: topics}`` of strata's own consumer groups."""
    return {
        AUDIT: topics(),
        AUTH: [t for t in topics() if t.startswith("strata.users.")],
        USERS: [t for t in topics() if t.startswith("strata.auth.")],
    }
