"""Routes of the data service: collections, their members and their items, with HTTP's guarantees.

Thin: each route turns HTTP into one :class:`~strata.serve_apps.data.DataClient` call and its answer back into
HTTP. What is HTTP's own is done here:

- **ETags and conditional requests** (:mod:`._preconditions`): a single collection, member or item carries its
  strong ETag; ``If-None-Match`` answers 304; ``If-Match`` is required (428 without) on the changes of collections
  and items, optional on members; the data service compares it in the statement that writes (412).
- **Idempotency keys** on every POST (IETF httpapi ``Idempotency-Key``): passed to the service, which stores the
  first answer per caller and route; a replay answers the same status, body and ``Location``, with
  ``Idempotent-Replayed: true``.
- **JSON Merge Patch** (RFC 7396) bodies on PATCH, as ``application/merge-patch+json`` or ``application/json``;
  anything else is 415 with ``Accept-Patch`` (:mod:`._json_bodies`, which also bounds every body's nesting).
- **Who calls**: the verified caller, and whether their roles grant ``data:admin`` (read everything), from the
  replica's permission cache: no call. The route's permission (``data:read`` / ``data:write``) was checked by
  ``authorize``; the caller's role in the collection is checked by the data service in the query itself.

Path ids are UUIDs (anything else is a 422 problem before any call).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from strata.schemas import (
    Collection,
    CollectionCreate,
    CollectionPage,
    CollectionStats,
    DataCaller,
    Forbidden,
    Item,
    ItemBatch,
    ItemBatchCreate,
    ItemCreate,
    ItemPage,
    ItemQuery,
    ItemReplace,
    ItemSort,
    Member,
    MemberPage,
    MemberPut,
    SortOrder,
    Unprocessable,
)
from strata.serve_apps.gateway._access import PermissionCache, caller_of
from strata.serve_apps.gateway._deps import DataDep, StatsDep
from strata.serve_apps.gateway._hygiene import EdgePolicy
from strata.serve_apps.gateway._json_bodies import CONTENT_TYPES_KEY, JSON, MERGE_PATCH, JsonBodyRoute, parse_json_body
from strata.serve_apps.gateway._preconditions import (
    conditional_computed,
    conditional_read,
    optional_if_match,
    required_if_match,
    tag_response,
)
from strata.serve_apps.gateway._problems import problem_responses

DATA_ADMIN = "data:admin"
REPLAYED = "Idempotent-Replayed"

# Errors every route may give are added to the OpenAPI document from the routing table (_openapi.py); the headers,
# links and limits of these routes are completed there too (_openapi.complete_data_operations).
router = APIRouter(tags=["data"], route_class=JsonBodyRoute)


async def data_caller(request: Request) -> DataCaller:
    """The data service's caller: the verified token's subject, ``admin`` when a role grants ``data:admin``."""
    claims = caller_of(request)
    cache: PermissionCache = request.app.state.permissions
    return DataCaller(user_id=claims.user_id, admin=DATA_ADMIN in await cache.permissions(claims.roles))


Caller = Annotated[DataCaller, Depends(data_caller)]
CollectionId = Annotated[uuid.UUID, Path(description="The collection's id (a UUID).")]
ItemId = Annotated[uuid.UUID, Path(description="The item's id (a UUID).")]
UserId = Annotated[uuid.UUID, Path(description="The member's user id (a UUID).")]

IfMatchHeader = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=1024,
        description=(
            'The ETag you read (`"3"`), several separated by commas, or `*` (any current version): the change'
            " happens only if the stored version is one of them, else 412 (someone changed it since)."
        ),
    ),
]
RequiredIfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=1024,
        description=(
            '**Required**: the ETag you read (`"3"`), several separated by commas, or `*`. Missing: 428;'
            " naming no current version: 412 (someone changed it since you read it: GET it again)."
        ),
    ),
]
IfNoneMatchHeader = Annotated[
    str | None,
    Header(
        alias="If-None-Match",
        max_length=1024,
        description="ETags you hold (or `*`): if the current one is among them, 304 Not Modified with no body.",
    ),
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r'^"?[\x21\x23-\x7e]{1,253}"?$',
        description=(
            "Makes the POST safe to retry (IETF httpapi Idempotency-Key): a retry with the same key and body answers"
            " the first answer (same status, body and `Location`, with `Idempotent-Replayed: true`) and has no second"
            " effect; the same key with another body is 422; a retry while the first still runs is 409. Keys are"
            " remembered per caller and route (see the limits above for how long). 1-253 visible ASCII characters,"
            " optionally quoted."
        ),
    ),
]
Cursor = Annotated[str | None, Query(max_length=1024, description="`next_cursor` of the previous page.")]
Limit = Annotated[int, Query(ge=1, description="Rows per page (at most the page size limit).")]


class CollectionMergePatch(BaseModel):
    """A JSON Merge Patch (RFC 7396) of a collection: members present replace, ``null`` removes (``item_schema``)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, description="As in `CollectionCreate`.")
    description: str | None = Field(default=None, description="As in `CollectionCreate`.")
    item_schema: dict[str, JsonValue] | None = Field(
        default=None, description="As in `CollectionCreate`; null removes it."
    )


class ItemMergePatch(BaseModel):
    """A JSON Merge Patch (RFC 7396) of an item: members present replace, ``null`` removes (inside ``attributes``);
    the patched item must still be a valid item (a title, attributes valid for the collection's schema)."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, description="As in `ItemCreate`.")
    attributes: dict[str, JsonValue] | None = Field(default=None, description="Merged into the item's attributes.")
    tags: list[str] | None = Field(default=None, description="As in `ItemCreate`: replaces the tags.")


MERGE_PATCH_MODELS: tuple[type[BaseModel], ...] = (CollectionMergePatch, ItemMergePatch)
"""Documentation of the PATCH bodies (the routes read them raw: a merge patch is not a model's partial copy)."""


def _merge_patch_body(model: type[BaseModel]) -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {
        CONTENT_TYPES_KEY: [MERGE_PATCH, JSON],
        "requestBody": {
            "required": True,
            "description": "A JSON Merge Patch (RFC 7396); `application/merge-patch+json` or `application/json`.",
            "content": {MERGE_PATCH: {"schema": schema}, JSON: {"schema": schema}},
        },
    }


_JSON_BODY = {CONTENT_TYPES_KEY: [JSON]}


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def _key(header: str | None) -> str | None:
    """The Idempotency-Key without the quotes of its structured-field form."""
    return header.strip('"') if header else None


def _max_page(request: Request) -> int:
    policy = getattr(request.app.state, "data_max_page_size", None)
    return int(policy) if policy is not None else 200


def _page_limit(request: Request, limit: int) -> int:
    most = _max_page(request)
    if limit > most:
        raise Unprocessable(f"limit must be between 1 and {most}", code="invalid-limit")
    return limit


async def _merge_patch(request: Request) -> dict[str, JsonValue]:
    """The PATCH body: a JSON object (its content type and nesting were checked by :class:`JsonBodyRoute`)."""
    if not await request.body():
        raise Unprocessable("the body must be a JSON Merge Patch object", code="invalid-patch")
    value = await request.json()
    if not isinstance(value, dict):
        raise Unprocessable("a JSON Merge Patch here must be a JSON object", code="invalid-patch")
    return value


def _created(response: Response, location: str, version: int, replayed: bool) -> None:
    response.headers["Location"] = location
    tag_response(response, version)
    if replayed:
        response.headers[REPLAYED] = "true"


def _collection_url(collection_id: str) -> str:
    return f"/v1/collections/{collection_id}"


def _item_url(collection_id: str, item_id: str) -> str:
    return f"/v1/collections/{collection_id}/items/{item_id}"


_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 1, 1, tzinfo=UTC)


def _moment(name: str, moment: datetime | None) -> str | None:
    """``moment`` in ISO 8601 (naive means UTC) if PostgreSQL can compare it; 422 outside 1970..9998."""
    if moment is None:
        return None
    try:
        aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        if _EARLIEST <= aware.astimezone(UTC) < _LATEST:
            return aware.isoformat()
    except (OverflowError, ValueError):
        pass
    raise Unprocessable(f"{name} must lie between 1970 and 9998", code="invalid-time")


def _containment(request: Request, text: str | None) -> dict[str, JsonValue] | None:
    """The ``attributes`` filter: a JSON object in the query string, bounded like a body."""
    if text is None:
        return None
    policy: EdgePolicy = getattr(request.app.state, "edge_policy", None) or EdgePolicy()
    value = parse_json_body(text.encode(), policy.max_json_depth)
    if not isinstance(value, dict):
        raise Unprocessable("attributes must be a JSON object", code="invalid-attributes")
    return value


# --- collections ----------------------------------------------------------------------------------------------------


@router.post(
    "/v1/collections",
    status_code=status.HTTP_201_CREATED,
    operation_id="createCollection",
    summary="Create a collection (the caller owns it)",
    responses=problem_responses(409),
    openapi_extra=_JSON_BODY,
)
async def create_collection(
    body: CollectionCreate,
    caller: Caller,
    data: DataDep,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> Collection:
    created = await data.create_collection(
        caller, body, idempotency_key=_key(idempotency_key), request_id=_request_id(request)
    )
    collection = created.collection
    _created(response, _collection_url(collection.id), collection.version, created.replayed)
    return collection


@router.get(
    "/v1/collections",
    operation_id="listCollections",
    summary="The collections the caller owns or is a member of (`scope=all`: every one, with `data:admin`)",
    responses=problem_responses(400),
)
async def list_collections(
    caller: Caller,
    data: DataDep,
    request: Request,
    cursor: Cursor = None,
    limit: Limit = 50,
    scope: Annotated[
        str, Query(pattern="^(mine|all)$", description="`mine` (owned or shared), or `all` (needs `data:admin`).")
    ] = "mine",
) -> CollectionPage:
    if scope == "all" and not caller.admin:
        raise Forbidden(f"scope=all needs the permission {DATA_ADMIN!r}")
    return await data.list_collections(
        caller, cursor=cursor, limit=_page_limit(request, limit), everyone=scope == "all"
    )


@router.get(
    "/v1/collections/{collection_id}",
    operation_id="getCollection",
    response_model=Collection,
    summary="One collection",
    responses=problem_responses(404),
)
async def get_collection(
    collection_id: CollectionId,
    caller: Caller,
    data: DataDep,
    response: Response,
    if_none_match: IfNoneMatchHeader = None,
) -> Collection | Response:
    collection = await data.get_collection(caller, str(collection_id))
    return conditional_read(response, collection.version, if_none_match) or collection


@router.get(
    "/v1/collections/{collection_id}/stats",
    operation_id="getCollectionStats",
    response_model=CollectionStats,
    summary="Counts by tag and a summary of each numeric attribute of a collection's items",
    responses=problem_responses(404),
)
async def get_collection_stats(
    collection_id: CollectionId,
    caller: Caller,
    stats: StatsDep,
    response: Response,
    if_none_match: IfNoneMatchHeader = None,
) -> CollectionStats | Response:
    """Computed by the data service's processing deployment (CPU-bound, scaled on CPU) over at most
    `data_stats_max_items` items, kept until an event of the collection says it changed. The ETag is the figures'
    own: `If-None-Match` with it answers 304 while they are unchanged."""
    figures = await stats.collection_stats(caller, str(collection_id))
    representation = figures.model_dump_json(exclude={"computed_at"}).encode()
    return conditional_computed(response, representation, if_none_match) or figures


@router.patch(
    "/v1/collections/{collection_id}",
    operation_id="updateCollection",
    summary="Change a collection's name, description or item schema (JSON Merge Patch; owner)",
    responses=problem_responses(404, 412, 415, 428),
    openapi_extra=_merge_patch_body(CollectionMergePatch),
)
async def update_collection(
    collection_id: CollectionId,
    caller: Caller,
    data: DataDep,
    request: Request,
    response: Response,
    if_match: RequiredIfMatch = None,
) -> Collection:
    precondition = required_if_match(if_match)
    patch = await _merge_patch(request)
    collection = await data.update_collection(
        caller, str(collection_id), patch, if_match=precondition, request_id=_request_id(request)
    )
    tag_response(response, collection.version)
    return collection


@router.delete(
    "/v1/collections/{collection_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="deleteCollection",
    summary="Delete a collection with its items and members (owner)",
    responses=problem_responses(404, 412, 428),
)
async def delete_collection(
    collection_id: CollectionId, caller: Caller, data: DataDep, request: Request, if_match: RequiredIfMatch = None
) -> Response:
    precondition = required_if_match(if_match)
    await data.delete_collection(caller, str(collection_id), if_match=precondition, request_id=_request_id(request))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- members --------------------------------------------------------------------------------------------------------


@router.get(
    "/v1/collections/{collection_id}/members",
    operation_id="listMembers",
    summary="The users a collection is shared with",
    responses=problem_responses(400, 404),
)
async def list_members(
    collection_id: CollectionId,
    caller: Caller,
    data: DataDep,
    request: Request,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> MemberPage:
    return await data.list_members(caller, str(collection_id), cursor=cursor, limit=_page_limit(request, limit))


@router.get(
    "/v1/collections/{collection_id}/members/{user_id}",
    operation_id="getMember",
    response_model=Member,
    summary="One member of a collection",
    responses=problem_responses(404),
)
async def get_member(
    collection_id: CollectionId,
    user_id: UserId,
    caller: Caller,
    data: DataDep,
    response: Response,
    if_none_match: IfNoneMatchHeader = None,
) -> Member | Response:
    member = await data.get_member(caller, str(collection_id), str(user_id))
    return conditional_read(response, member.version, if_none_match) or member


@router.put(
    "/v1/collections/{collection_id}/members/{user_id}",
    operation_id="putMember",
    summary="Share a collection with a user as viewer or editor, or change their role (owner)",
    responses={
        201: {"description": "The user became a member", "model": Member},
        **problem_responses(404, 412, 415),
    },
    openapi_extra=_JSON_BODY,
)
async def put_member(
    collection_id: CollectionId,
    user_id: UserId,
    body: MemberPut,
    caller: Caller,
    data: DataDep,
    request: Request,
    response: Response,
    if_match: IfMatchHeader = None,
) -> Member:
    change = await data.put_member(
        caller,
        str(collection_id),
        str(user_id),
        body.role,
        if_match=optional_if_match(if_match),
        request_id=_request_id(request),
    )
    if change.created:
        response.status_code = status.HTTP_201_CREATED
        response.headers["Location"] = f"{_collection_url(str(collection_id))}/members/{user_id}"
    tag_response(response, change.member.version)
    return change.member


@router.delete(
    "/v1/collections/{collection_id}/members/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="removeMember",
    summary="End a membership (the owner, or the member leaving)",
    responses=problem_responses(404, 412),
)
async def remove_member(
    collection_id: CollectionId,
    user_id: UserId,
    caller: Caller,
    data: DataDep,
    request: Request,
    if_match: IfMatchHeader = None,
) -> Response:
    await data.remove_member(
        caller, str(collection_id), str(user_id), if_match=optional_if_match(if_match), request_id=_request_id(request)
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- items ----------------------------------------------------------------------------------------------------------


@router.post(
    "/v1/collections/{collection_id}/items",
    status_code=status.HTTP_201_CREATED,
    operation_id="createItem",
    summary="Create an item (owner or editor)",
    responses=problem_responses(404, 409, 415),
    openapi_extra=_JSON_BODY,
)
async def create_item(
    collection_id: CollectionId,
    body: ItemCreate,
    caller: Caller,
    data: DataDep,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> Item:
    created = await data.create_item(
        caller, str(collection_id), body, idempotency_key=_key(idempotency_key), request_id=_request_id(request)
    )
    item = created.item
    _created(response, _item_url(item.collection_id, item.id), item.version, created.replayed)
    return item


@router.post(
    "/v1/collections/{collection_id}/items/batch",
    operation_id="createItems",
    summary="Create up to the batch limit of items in one transaction: all of them, or none (owner or editor)",
    responses=problem_responses(404, 409, 415),
    openapi_extra=_JSON_BODY,
)
async def create_items(
    collection_id: CollectionId,
    body: ItemBatchCreate,
    caller: Caller,
    data: DataDep,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> ItemBatch:
    created = await data.create_items(
        caller, str(collection_id), body, idempotency_key=_key(idempotency_key), request_id=_request_id(request)
    )
    if created.replayed:
        response.headers[REPLAYED] = "true"
    return created.batch


@router.get(
    "/v1/collections/{collection_id}/items",
    operation_id="listItems",
    summary="A page of a collection's items (keyset cursor; filters by tag, attributes, `updated_since`)",
    responses=problem_responses(400, 404),
)
async def list_items(
    collection_id: CollectionId,
    caller: Caller,
    data: DataDep,
    request: Request,
    cursor: Cursor = None,
    limit: Limit = 50,
    sort: Annotated[ItemSort, Query(description="Order by creation or last change.")] = "created",
    order: Annotated[SortOrder, Query(description="Ascending or descending.")] = "asc",
    tag: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=64)]],
        Query(max_length=32, description="Items carrying every one of these tags."),
    ] = [],  # noqa: B006 - FastAPI copies defaults
    attributes: Annotated[
        str | None,
        Query(max_length=2048, description='Items whose attributes contain this JSON object, e.g. `{"color":"red"}`.'),
    ] = None,
    updated_since: Annotated[
        datetime | None, Query(description="Items changed at or after this moment (ISO 8601; no zone: UTC).")
    ] = None,
) -> ItemPage:
    query = ItemQuery(
        cursor=cursor,
        limit=_page_limit(request, limit),
        sort=sort,
        order=order,
        tags=tuple(tag),
        attributes=_containment(request, attributes),
        updated_since=_moment("updated_since", updated_since),
    )
    return await data.list_items(caller, str(collection_id), query)


@router.get(
    "/v1/collections/{collection_id}/items/{item_id}",
    operation_id="getItem",
    response_model=Item,
    summary="One item",
    responses=problem_responses(404),
)
async def get_item(
    collection_id: CollectionId,
    item_id: ItemId,
    caller: Caller,
    data: DataDep,
    response: Response,
    if_none_match: IfNoneMatchHeader = None,
) -> Item | Response:
    item = await data.get_item(caller, str(collection_id), str(item_id))
    return conditional_read(response, item.version, if_none_match) or item


@router.put(
    "/v1/collections/{collection_id}/items/{item_id}",
    operation_id="replaceItem",
    summary="Replace an item's title, attributes and tags (owner or editor)",
    responses=problem_responses(404, 412, 415, 428),
    openapi_extra=_JSON_BODY,
)
async def replace_item(
    collection_id: CollectionId,
    item_id: ItemId,
    body: ItemReplace,
    caller: Caller,
    data: DataDep,
    request: Request,
    response: Response,
    if_match: RequiredIfMatch = None,
) -> Item:
    precondition = required_if_match(if_match)
    item = await data.replace_item(
        caller, str(collection_id), str(item_id), body, if_match=precondition, request_id=_request_id(request)
    )
    tag_response(response, item.version)
    return item


@router.patch(
    "/v1/collections/{collection_id}/items/{item_id}",
    operation_id="patchItem",
    summary="Change an item (JSON Merge Patch; owner or editor)",
    responses=problem_responses(404, 412, 415, 428),
    openapi_extra=_merge_patch_body(ItemMergePatch),
)
async def patch_item(
    collection_id: CollectionId,
    item_id: ItemId,
    caller: Caller,
    data: DataDep,
    request: Request,
    response: Response,
    if_match: RequiredIfMatch = None,
) -> Item:
    precondition = required_if_match(if_match)
    patch = await _merge_patch(request)
    item = await data.patch_item(
        caller, str(collection_id), str(item_id), patch, if_match=precondition, request_id=_request_id(request)
    )
    tag_response(response, item.version)
    return item


@router.delete(
    "/v1/collections/{collection_id}/items/{item_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="deleteItem",
    summary="Delete an item (owner or editor)",
    responses=problem_responses(404, 412, 428),
)
async def delete_item(
    collection_id: CollectionId,
    item_id: ItemId,
    caller: Caller,
    data: DataDep,
    request: Request,
    if_match: RequiredIfMatch = None,
) -> Response:
    precondition = required_if_match(if_match)
    await data.delete_item(
        caller, str(collection_id), str(item_id), if_match=precondition, request_id=_request_id(request)
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
