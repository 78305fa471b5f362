"""Every event type strata publishes, its payload model and its topic.

A type is ``strata.<service>.<entity>.<verb>.v<major>``; it travels on topic
``strata.<service>.<entity>.v<major>``, keyed by the aggregate id. Within a
major version, payloads only grow (new optional fields); anything else is a new
major version, hence a new type and topic.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from strata.schemas.events._payloads import (
    AccountLoggedIn,
    AccountLoginFailed,
    AccountPasswordChanged,
    AccountRegistered,
    CollectionCreated,
    CollectionDeleted,
    CollectionUpdated,
    ItemCreated,
    ItemDeleted,
    ItemUpdated,
    MemberAdded,
    MemberChanged,
    MemberRemoved,
    SessionsRevoked,
    UserDeleted,
    UserDisabled,
    UserEnabled,
    UserRolesChanged,
    UserUpdated,
)

SCHEMA_BASE_URL = "https://strata.dev/schemas/events/"


class UnknownEventType(ValueError):
    """A message names an event type strata does not publish."""


@dataclass(frozen=True, slots=True)
class EventType:
    service: str
    entity: str
    verb: str
    payload: type[BaseModel]
    version: int = 1

    @property
    def type(self) -> str:
        return f"strata.{self.service}.{self.entity}.{self.verb}.v{self.version}"

    @property
    def topic(self) -> str:
        return topic_name(self.service, self.entity, self.version)


def topic_name(service: str, entity: str, version: int = 1) -> str:
    return f"strata.{service}.{entity}.v{version}"


# Everything that happens to a collection (itself, its members, its items) travels on one topic, keyed by the
# collection's id: a consumer sees one collection's events in the order they were committed.
COLLECTION_CREATED = EventType("data", "collection", "created", CollectionCreated)
COLLECTION_UPDATED = EventType("data", "collection", "updated", CollectionUpdated)
COLLECTION_DELETED = EventType("data", "collection", "deleted", CollectionDeleted)
MEMBER_ADDED = EventType("data", "collection", "member_added", MemberAdded)
MEMBER_CHANGED = EventType("data", "collection", "member_changed", MemberChanged)
MEMBER_REMOVED = EventType("data", "collection", "member_removed", MemberRemoved)
ITEM_CREATED = EventType("data", "collection", "item_created", ItemCreated)
ITEM_UPDATED = EventType("data", "collection", "item_updated", ItemUpdated)
ITEM_DELETED = EventType("data", "collection", "item_deleted", ItemDeleted)

ACCOUNT_REGISTERED = EventType("auth", "account", "registered", AccountRegistered)
ACCOUNT_LOGGED_IN = EventType("auth", "account", "logged_in", AccountLoggedIn)
ACCOUNT_LOGIN_FAILED = EventType("auth", "account", "login_failed", AccountLoginFailed)
ACCOUNT_PASSWORD_CHANGED = EventType("auth", "account", "password_changed", AccountPasswordChanged)
SESSIONS_REVOKED = EventType("auth", "account", "sessions_revoked", SessionsRevoked)

USER_UPDATED = EventType("users", "user", "updated", UserUpdated)
USER_ROLES_CHANGED = EventType("users", "user", "roles_changed", UserRolesChanged)
USER_DISABLED = EventType("users", "user", "disabled", UserDisabled)
USER_ENABLED = EventType("users", "user", "enabled", UserEnabled)
USER_DELETED = EventType("users", "user", "deleted", UserDeleted)

EVENT_TYPES: dict[str, EventType] = {
    e.type: e
    for e in (
        COLLECTION_CREATED,
        COLLECTION_UPDATED,
        COLLECTION_DELETED,
        MEMBER_ADDED,
        MEMBER_CHANGED,
        MEMBER_REMOVED,
        ITEM_CREATED,
        ITEM_UPDATED,
        ITEM_DELETED,
        ACCOUNT_REGISTERED,
        ACCOUNT_LOGGED_IN,
        ACCOUNT_LOGIN_FAILED,
        ACCOUNT_PASSWORD_CHANGED,
        SESSIONS_REVOKED,
        USER_UPDATED,
        USER_ROLES_CHANGED,
        USER_DISABLED,
        USER_ENABLED,
        USER_DELETED,
    )
}


def event_type(name: str) -> EventType:
    try:
        return EVENT_TYPES[name]
    except KeyError:
        raise UnknownEventType(f"unknown event type {name!r}") from None


def topics() -> list[str]:
    """Every topic strata publishes on, sorted."""
    return sorted({e.topic for e in EVENT_TYPES.values()})
