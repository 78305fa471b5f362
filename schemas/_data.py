"""The data service's contract: collections, their members and their items, on the wire and across the hop.

The gateway validates requests against these models, the data service answers with them, and the typed client
(:class:`~strata.serve_apps.data.DataClient`) carries them across the handle call. What the models cannot know
(the limits an operator sets: attributes' size and depth, a schema's size, the batch and page sizes) the data
service checks itself, so a script calling it by handle is held to the same rules as an HTTP client.

Versions and ETags: every collection, member and item has a ``version`` (1 when created, bumped by each change);
its strong ETag is the version in quotes (``"3"``). A change that names the version it read (``If-Match``) is
refused with :class:`~strata.schemas.PreconditionFailed` when the stored version moved on.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from strata.schemas._api import DATE_TIME, PLAIN_TEXT

MemberRole = Literal["viewer", "editor"]
"""A member's role in a collection: ``viewer`` reads it and its items, ``editor`` also writes its items."""
AccessRole = Literal["owner", "editor", "viewer", "admin"]
"""How a caller reaches a collection: its owner, a member, or (read only) through the ``data:admin`` permission."""
ItemSort = Literal["created", "updated"]
SortOrder = Literal["asc", "desc"]

Name = Annotated[str, Field(min_length=1, max_length=200, pattern=PLAIN_TEXT, description="Shown to people.")]
Description = Annotated[str, Field(max_length=2000, pattern=PLAIN_TEXT)]
Title = Annotated[str, Field(min_length=1, max_length=500, pattern=PLAIN_TEXT, description="The item's title.")]
Tag = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$", description="A tag.")]
Tags = Annotated[list[Tag], Field(max_length=32, description="Tags (at most 32, duplicates dropped, kept sorted).")]
Attributes = Annotated[
    dict[str, JsonValue],
    Field(
        description=(
            "A JSON object, validated against the collection's `item_schema` when it has one; its size and nesting"
            " depth are bounded (`data_max_attributes_bytes`, `data_max_json_depth`)."
        )
    ),
]
ItemSchema = Annotated[
    dict[str, JsonValue],
    Field(
        description=(
            "A JSON Schema (Draft 2020-12) every item's `attributes` must satisfy; bounded in size and depth"
            " (`data_max_schema_bytes`, `data_max_json_depth`); only local `$ref`s (`#...`); `pattern`s are RE2."
        )
    ),
]

_VERSION_TAG = re.compile(r'^"([0-9]{1,10})"$')


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataCaller(BaseModel):
    """Who calls the data service: a user (the token's subject) and whether they hold ``data:admin``."""

    model_config = ConfigDict(frozen=True)

    user_id: str = Field(description="The caller's id (a UUID).")
    admin: bool = Field(default=False, description="Holds `data:admin`: may read every collection, write none.")


class IfMatch(BaseModel):
    """A change's precondition, from an ``If-Match`` header: ``*`` (any current version) or the versions it read.

    Strong comparison (RFC 9110, 13.1.1): a weak tag (``W/"3"``) or a tag strata never made matches nothing.
    """

    model_config = ConfigDict(frozen=True)

    any: bool = False
    versions: tuple[int, ...] = ()

    @classmethod
    def parse(cls, header: str) -> IfMatch:
        """The precondition an ``If-Match`` header value states (a list of entity tags, or ``*``)."""
        text = header.strip()
        if text == "*":
            return cls(any=True)
        versions: list[int] = []
        for tag in text.split(","):
            match = _VERSION_TAG.match(tag.strip())
            if match is not None:
                versions.append(int(match.group(1)))
        return cls(versions=tuple(versions))

    def matches(self, version: int) -> bool:
        return self.any or version in self.versions


def etag(version: int) -> str:
    """The strong ETag of a resource at ``version``."""
    return f'"{version}"'


# --- collections ----------------------------------------------------------------------------------------------------


class CollectionCreate(_Body):
    name: Name
    description: Description = ""
    item_schema: ItemSchema | None = None


class Collection(BaseModel):
    """A collection of items, owned by one user and shared with members."""

    id: str
    owner_id: str
    name: str
    description: str
    item_schema: dict[str, JsonValue] | None
    version: int = Field(description="1 when created, bumped on every change; the ETag is this in quotes.")
    created_at: str = Field(json_schema_extra=DATE_TIME)
    updated_at: str = Field(json_schema_extra=DATE_TIME)


class CollectionEntry(Collection):
    """A collection in a listing, with how the caller reaches it."""

    role: AccessRole = Field(description="The caller's access: owner, editor, viewer, or admin (read only).")


class CollectionPage(BaseModel):
    items: list[CollectionEntry]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class CreatedCollection(BaseModel):
    """A collection created by a POST, and whether this answer replays an earlier one with the same key."""

    collection: Collection
    replayed: bool = False


# --- members --------------------------------------------------------------------------------------------------------


class MemberPut(_Body):
    role: MemberRole


class Member(BaseModel):
    """A user a collection is shared with, and their role in it."""

    collection_id: str
    user_id: str
    role: MemberRole
    version: int
    created_at: str = Field(json_schema_extra=DATE_TIME)
    updated_at: str = Field(json_schema_extra=DATE_TIME)


class MemberChange(BaseModel):
    """The member after a PUT, and whether it was added (201) rather than changed (200)."""

    member: Member
    created: bool


class MemberPage(BaseModel):
    items: list[Member]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


# --- items ----------------------------------------------------------------------------------------------------------


class ItemCreate(_Body):
    title: Title
    attributes: Attributes = Field(default_factory=dict)
    tags: Tags = Field(default_factory=list)


class ItemReplace(ItemCreate):
    """The whole item as a PUT replaces it (and as a JSON Merge Patch must leave it)."""


class ItemBatchCreate(_Body):
    items: list[ItemCreate] = Field(
        min_length=1, description="The items to create, all or none (at most `data_max_batch_items`)."
    )


class Item(BaseModel):
    """An item of a collection."""

    id: str
    collection_id: str
    title: str
    attributes: dict[str, JsonValue]
    tags: list[str]
    version: int = Field(description="1 when created, bumped on every change; the ETag is this in quotes.")
    created_by: str = Field(description="Who created it.")
    updated_by: str = Field(description="Who changed it last.")
    created_at: str = Field(json_schema_extra=DATE_TIME)
    updated_at: str = Field(json_schema_extra=DATE_TIME)


class CreatedItem(BaseModel):
    item: Item
    replayed: bool = False


class ItemBatch(BaseModel):
    items: list[Item]


class CreatedItems(BaseModel):
    batch: ItemBatch
    replayed: bool = False


class ItemQuery(BaseModel):
    """How to list a collection's items: filters, order and page (a cursor is valid only for the same query)."""

    model_config = ConfigDict(frozen=True)

    cursor: str | None = None
    limit: int = 50
    sort: ItemSort = "created"
    order: SortOrder = "asc"
    tags: tuple[str, ...] = Field(default=(), description="Items carrying every one of these tags.")
    attributes: dict[str, JsonValue] | None = Field(
        default=None, description="Items whose attributes contain this JSON object (PostgreSQL `@>`)."
    )
    updated_since: str | None = Field(default=None, description="Items changed at or after this moment (ISO 8601).")


class ItemPage(BaseModel):
    items: list[Item]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


# --- statistics -----------------------------------------------------------------------------------------------------


class Histogram(BaseModel):
    """Equal-width bins from the smallest value to the largest (the last bin holds the largest)."""

    edges: list[float] = Field(description="Bin boundaries, one more than `counts`.")
    counts: list[int]


class NumericSummary(BaseModel):
    """One numeric attribute over the items that have it (a number, not a boolean, at the top level)."""

    count: int
    min: float
    max: float
    mean: float
    p50: float = Field(description="Percentiles by linear interpolation between the closest ranks (inclusive).")
    p90: float
    p99: float
    histogram: Histogram


class CollectionStats(BaseModel):
    """Counts by tag and a summary of each numeric attribute, over a collection's items."""

    collection_id: str
    items: int = Field(description="Items counted (at most `limit`).")
    limit: int = Field(description="The most items a summary reads (`data_stats_max_items`).")
    truncated: bool = Field(description="True when the collection holds more items than `limit`: the oldest count.")
    tags: dict[str, int] = Field(description="Items per tag, the most frequent first (at most `data_stats_max_tags`).")
    tags_truncated: bool = Field(description="True when more tags were seen than `tags` holds.")
    tags_partial: bool = Field(
        default=False,
        description="True when the items carry more distinct tags than `data_stats_max_distinct_tags` (10,000): the"
        " first seen are counted, a tag first seen past the bound is not, so `tags` may miss a frequent one.",
    )
    attributes: dict[str, NumericSummary] = Field(
        description="Per numeric attribute, by name (at most `data_stats_max_attributes`: the first seen)."
    )
    attributes_truncated: bool = Field(description="True when more numeric attributes were seen than summarized.")
    computed_at: str = Field(
        json_schema_extra=DATE_TIME, description="When these figures were computed (a cached answer keeps its time)."
    )
