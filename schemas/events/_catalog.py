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
    ItemCreated,
    ItemDeleted,
    ItemUpdated,
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


ITEM_CREATED = EventType("data", "item", "created", ItemCreated)
ITEM_UPDATED = EventType("data", "item", "updated", ItemUpdated)
ITEM_DELETED = EventType("data", "item", "deleted", ItemDeleted)

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
