"""Payloads of strata's events: small, self-contained facts about one aggregate."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class _Payload(BaseModel):
    # Consumers must ignore fields they do not know (payloads grow within a major version);
    # producers never send unknown ones.
    model_config = ConfigDict(extra="ignore", frozen=True)


ItemId = Annotated[str, Field(min_length=1, max_length=64, description="Id of the data item.")]
OwnerId = Annotated[str, Field(min_length=1, max_length=256, description="Who owns the item.")]
Kind = Annotated[
    str, Field(min_length=1, max_length=64, description="The item's kind (free-form, chosen by its owner).")
]


class ItemCreated(_Payload):
    """A data item was stored."""

    item_id: ItemId
    owner_id: OwnerId
    kind: Kind
    version: Annotated[int, Field(ge=1, description="The item's version after the change.")]


class ItemUpdated(_Payload):
    """A data item's body changed."""

    item_id: ItemId
    owner_id: OwnerId
    kind: Kind
    version: Annotated[int, Field(ge=2, description="The item's version after the change.")]


class ItemDeleted(_Payload):
    """A data item was deleted."""

    item_id: ItemId
    owner_id: OwnerId
    version: Annotated[int, Field(ge=1, description="The item's last version.")]
