"""Payloads of strata's events: small, self-contained facts about one aggregate."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Payload(BaseModel):
    # Consumers must ignore fields they do not know (payloads grow within a major version);
    # producers never send unknown ones.
    model_config = ConfigDict(extra="ignore", frozen=True)


CollectionId = Annotated[str, Field(min_length=36, max_length=36, description="Id of the collection (a UUID).")]
ItemId = Annotated[str, Field(min_length=36, max_length=36, description="Id of the item (a UUID).")]
PersonId = Annotated[str, Field(min_length=1, max_length=64, description="Id of a user (the `sub` of their tokens).")]
MemberRoleName = Literal["viewer", "editor"]


class CollectionCreated(_Payload):
    """A collection was created."""

    collection_id: CollectionId
    owner_id: PersonId
    name: Annotated[str, Field(min_length=1, max_length=200)]
    version: Annotated[int, Field(ge=1, description="The collection's version after the change.")]


class CollectionUpdated(_Payload):
    """A collection's name, description or item schema changed."""

    collection_id: CollectionId
    owner_id: PersonId
    name: Annotated[str, Field(min_length=1, max_length=200)]
    version: Annotated[int, Field(ge=2, description="The collection's version after the change.")]
    schema_changed: bool = Field(default=False, description="Whether its `item_schema` changed.")


class CollectionDeleted(_Payload):
    """A collection was deleted, and every item and membership of it with it (no event is sent for each)."""

    collection_id: CollectionId
    owner_id: PersonId
    version: Annotated[int, Field(ge=1, description="The collection's last version.")]
    items: Annotated[int, Field(ge=0, description="How many items were deleted with it.")]
    reason: Literal["deleted", "owner_deleted"] = Field(
        default="deleted",
        description="deleted: by a request; owner_deleted: its owner's user was deleted.",
    )


class MemberAdded(_Payload):
    """A collection was shared with a user."""

    collection_id: CollectionId
    user_id: PersonId
    role: MemberRoleName


class MemberChanged(_Payload):
    """A member's role in a collection changed."""

    collection_id: CollectionId
    user_id: PersonId
    role: MemberRoleName
    previous_role: MemberRoleName


class MemberRemoved(_Payload):
    """A user lost their membership of a collection."""

    collection_id: CollectionId
    user_id: PersonId
    role: MemberRoleName = Field(description="The role they had.")
    reason: Literal["removed", "left", "user_deleted"] = Field(
        description="removed: by the owner; left: by the member themself; user_deleted: their user was deleted."
    )


class ItemCreated(_Payload):
    """An item was created in a collection."""

    collection_id: CollectionId
    item_id: ItemId
    version: Annotated[int, Field(ge=1, description="The item's version after the change.")]


class ItemUpdated(_Payload):
    """An item was replaced or patched."""

    collection_id: CollectionId
    item_id: ItemId
    version: Annotated[int, Field(ge=2, description="The item's version after the change.")]


class ItemDeleted(_Payload):
    """An item was deleted."""

    collection_id: CollectionId
    item_id: ItemId
    version: Annotated[int, Field(ge=1, description="The item's last version.")]


UserId = Annotated[
    str, Field(min_length=1, max_length=64, description="Id of the account (the `sub` of its access tokens).")
]
SessionId = Annotated[
    str,
    Field(min_length=1, max_length=64, description="Id of the session: its refresh-token family (the `sid` claim)."),
]


class AccountRegistered(_Payload):
    """An account was registered (email and password); its profile is created from this event."""

    user_id: UserId
    email: Annotated[str, Field(min_length=3, max_length=254, description="The account's email, lower-cased.")]


class AccountLoggedIn(_Payload):
    """An account logged in with its password, starting a session."""

    user_id: UserId
    session_id: SessionId


class AccountLoginFailed(_Payload):
    """A login was refused: wrong email or password, or too many recent failures (no credential is included)."""

    user_id: UserId | None = Field(
        default=None, description="The account tried, when the email belongs to one; null for an unknown email."
    )
    reason: Literal["invalid_credentials", "locked"] = Field(
        description=(
            "invalid_credentials: wrong email or password, or a disabled account; locked: refused without checking"
            " the password, during a backoff or lock after repeated failures."
        )
    )


class AccountPasswordChanged(_Payload):
    """An account's password was changed (its sessions are revoked with it)."""

    user_id: UserId


class SessionsRevoked(_Payload):
    """Sessions of an account were ended: refresh tokens stop working, access tokens should be refused at once."""

    user_id: UserId
    reason: Literal["logout", "logout_all", "refresh_token_reuse", "password_changed", "disabled", "deleted"] = Field(
        description=(
            "logout: one session; logout_all: every session; refresh_token_reuse: a rotated refresh token was"
            " presented again, so its session was revoked; password_changed: every session; disabled, deleted:"
            " every session, because an administrator disabled or deleted the user."
        )
    )
    family_id: SessionId | None = Field(
        default=None, description="The one session revoked (logout, refresh_token_reuse); null when all were."
    )


RoleName = Annotated[str, Field(min_length=1, max_length=64, description="A role's name (e.g. admin, member, viewer).")]


class UserUpdated(_Payload):
    """A user's profile changed (the fields a user edits themself)."""

    user_id: UserId
    display_name: Annotated[str, Field(max_length=100)] | None = Field(
        default=None, description="The name shown for the user; null (or absent) when cleared."
    )


class UserRolesChanged(_Payload):
    """A user's roles were replaced; tokens issued before it should be refused, new ones carry the new roles."""

    user_id: UserId
    roles: list[RoleName] = Field(min_length=1, description="The user's roles from now on.")
    perm_version: int = Field(
        ge=1,
        description=(
            "The user's permissions version after the change (the `pv` claim); grows with each change, so a"
            " redelivered older event can be recognised and ignored."
        ),
    )


class UserDisabled(_Payload):
    """A user was disabled: they can no longer log in, and their sessions are ended."""

    user_id: UserId


class UserEnabled(_Payload):
    """A disabled user was enabled again: they may log in again (tokens from before they were disabled stay dead)."""

    user_id: UserId


class UserDeleted(_Payload):
    """A user was deleted: their profile and account are gone, and their sessions are ended."""

    user_id: UserId
