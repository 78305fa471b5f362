"""The typed client of the data service: one method per call of :class:`DataService`, one hop away.

Every call names its caller (:class:`~strata.schemas.DataCaller`): the data service checks the caller's role in the
collection in the same query that reads or writes it, so the gateway only checks the route's permission
(``data:read``, ``data:write``) and never asks the data service "may they?" first.

Errors arrive as the service raised them::

    CollectionNotFound     no such collection, or one the caller may not see (strangers cannot tell)   404
    ItemNotFound           no such item in the collection                                               404
    Forbidden              the caller sees the collection but their role does not allow the change       403
    PreconditionFailed     ``if_match`` names no current version                                         412
    Conflict               ``code`` ``idempotency-in-progress``: the key's first request still runs      409
    Unprocessable          ``code`` ``idempotency-key-reused`` (same key, another request),
                           ``invalid-idempotency-key``,
                           ``invalid-attributes`` (the collection's schema refuses them, ``errors`` says where,
                           ``index`` which item of a batch), ``too-complex`` (checking the request's items
                           takes past its budget, ``limit``), ``invalid-schema`` (an item schema that does not
                           compile, is too big or deep, or asks for too much work), ``too-large``, ``too-deep``,
                           ``batch-too-large``, ``invalid-patch``, ``invalid-limit``, ``invalid-role``,
                           ``owner-not-member``, ``invalid-user-id``, ``invalid-updated-since``,
                           ``invalid-query``                                                             422
    InvalidCursor          a cursor that is not one this listing made                                   400
    ServiceUnavailable     the service refused the call (its queue is full) or has no replica            503

``request_id`` is the HTTP request that caused a change; it travels on the change's event. ``idempotency_key`` (on
the creating calls) makes a retry answer the first call's result, with ``replayed`` set, and no second effect.
"""

from __future__ import annotations

from pydantic import JsonValue

from strata.schemas import (
    Collection,
    CollectionCreate,
    CollectionPage,
    CreatedCollection,
    CreatedItem,
    CreatedItems,
    DataCaller,
    IfMatch,
    Item,
    ItemBatchCreate,
    ItemCreate,
    ItemPage,
    ItemQuery,
    ItemReplace,
    Member,
    MemberChange,
    MemberPage,
    MemberRole,
)
from strata.serve_apps._client import ServiceClient


class DataClient(ServiceClient):
    """Collections, their members and their items; every change records its event in the service's outbox."""

    app = "data"
    __slots__ = ()

    # --- collections ------------------------------------------------------------------------------------------------

    async def create_collection(
        self,
        caller: DataCaller,
        body: CollectionCreate,
        *,
        idempotency_key: str | None = None,
        request_id: str | None = None,
    ) -> CreatedCollection:
        """A new collection owned by the caller (version 1)."""
        return await self._call(
            CreatedCollection,
            "create_collection",
            caller,
            body,
            idempotency_key=idempotency_key,
            request_id=request_id,
        )

    async def list_collections(
        self, caller: DataCaller, *, cursor: str | None = None, limit: int = 50, everyone: bool = False
    ) -> CollectionPage:
        """The collections the caller owns or is a member of, oldest first; ``everyone`` (``data:admin``): all."""
        return await self._call(
            CollectionPage, "list_collections", caller, cursor=cursor, limit=limit, everyone=everyone
        )

    async def get_collection(self, caller: DataCaller, collection_id: str) -> Collection:
        """The collection, if the caller owns it, is a member or holds ``data:admin``."""
        return await self._call(Collection, "get_collection", caller, collection_id)

    async def update_collection(
        self,
        caller: DataCaller,
        collection_id: str,
        patch: dict[str, JsonValue],
        *,
        if_match: IfMatch,
        request_id: str | None = None,
    ) -> Collection:
        """Apply a JSON Merge Patch (RFC 7396) to ``name``, ``description``, ``item_schema`` (owner only)."""
        return await self._call(
            Collection, "update_collection", caller, collection_id, patch, if_match=if_match, request_id=request_id
        )

    async def delete_collection(
        self, caller: DataCaller, collection_id: str, *, if_match: IfMatch, request_id: str | None = None
    ) -> None:
        """Delete the collection with its items and members (owner only)."""
        await self._call_none("delete_collection", caller, collection_id, if_match=if_match, request_id=request_id)

    # --- members ----------------------------------------------------------------------------------------------------

    async def put_member(
        self,
        caller: DataCaller,
        collection_id: str,
        user_id: str,
        role: MemberRole,
        *,
        if_match: IfMatch | None = None,
        request_id: str | None = None,
    ) -> MemberChange:
        """Share the collection with ``user_id`` as ``role``, or change their role (owner only)."""
        return await self._call(
            MemberChange,
            "put_member",
            caller,
            collection_id,
            user_id,
            role,
            if_match=if_match,
            request_id=request_id,
        )

    async def get_member(self, caller: DataCaller, collection_id: str, user_id: str) -> Member:
        """One member of the collection (anyone who may read the collection)."""
        return await self._call(Member, "get_member", caller, collection_id, user_id)

    async def list_members(
        self, caller: DataCaller, collection_id: str, *, cursor: str | None = None, limit: int = 50
    ) -> MemberPage:
        """The collection's members, in the order they were added (anyone who may read the collection)."""
        return await self._call(MemberPage, "list_members", caller, collection_id, cursor=cursor, limit=limit)

    async def remove_member(
        self,
        caller: DataCaller,
        collection_id: str,
        user_id: str,
        *,
        if_match: IfMatch | None = None,
        request_id: str | None = None,
    ) -> None:
        """End ``user_id``'s membership (the owner, or the member themself: leaving)."""
        await self._call_none("remove_member", caller, collection_id, user_id, if_match=if_match, request_id=request_id)

    # --- items ------------------------------------------------------------------------------------------------------

    async def create_item(
        self,
        caller: DataCaller,
        collection_id: str,
        body: ItemCreate,
        *,
        idempotency_key: str | None = None,
        request_id: str | None = None,
    ) -> CreatedItem:
        """A new item in the collection (owner or editor), version 1."""
        return await self._call(
            CreatedItem,
            "create_item",
            caller,
            collection_id,
            body,
            idempotency_key=idempotency_key,
            request_id=request_id,
        )

    async def create_items(
        self,
        caller: DataCaller,
        collection_id: str,
        body: ItemBatchCreate,
        *,
        idempotency_key: str | None = None,
        request_id: str | None = None,
    ) -> CreatedItems:
        """Up to ``data_max_batch_items`` new items in one transaction: all of them, or none and the error."""
        return await self._call(
            CreatedItems,
            "create_items",
            caller,
            collection_id,
            body,
            idempotency_key=idempotency_key,
            request_id=request_id,
        )

    async def get_item(self, caller: DataCaller, collection_id: str, item_id: str) -> Item:
        """One item of the collection."""
        return await self._call(Item, "get_item", caller, collection_id, item_id)

    async def list_items(self, caller: DataCaller, collection_id: str, query: ItemQuery) -> ItemPage:
        """One page of the collection's items, filtered and ordered as ``query`` says."""
        return await self._call(ItemPage, "list_items", caller, collection_id, query)

    async def replace_item(
        self,
        caller: DataCaller,
        collection_id: str,
        item_id: str,
        body: ItemReplace,
        *,
        if_match: IfMatch,
        request_id: str | None = None,
    ) -> Item:
        """Replace the item's title, attributes and tags (owner or editor)."""
        return await self._call(
            Item, "replace_item", caller, collection_id, item_id, body, if_match=if_match, request_id=request_id
        )

    async def patch_item(
        self,
        caller: DataCaller,
        collection_id: str,
        item_id: str,
        patch: dict[str, JsonValue],
        *,
        if_match: IfMatch,
        request_id: str | None = None,
    ) -> Item:
        """Apply a JSON Merge Patch (RFC 7396) to the item's ``title``, ``attributes`` and ``tags``."""
        return await self._call(
            Item, "patch_item", caller, collection_id, item_id, patch, if_match=if_match, request_id=request_id
        )

    async def delete_item(
        self,
        caller: DataCaller,
        collection_id: str,
        item_id: str,
        *,
        if_match: IfMatch,
        request_id: str | None = None,
    ) -> None:
        """Delete the item (owner or editor)."""
        await self._call_none("delete_item", caller, collection_id, item_id, if_match=if_match, request_id=request_id)
