"""The data service's contract: its operations (:class:`DataOperations`) with its typed client (:class:`DataClient`),
and those of its processing deployment (:class:`StatsOperations`, :class:`StatsClient`: collection statistics).

The deployments (``strata.serve_apps.data.DataService`` and ``DataProcessing``) implement the Protocols, and mypy
checks they do; the clients offer them, one hop away. Importing this module loads no server code.

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

from typing import Protocol

from pydantic import JsonValue

from strata.contracts._client import ServiceClient
from strata.schemas import (
    Collection,
    CollectionCreate,
    CollectionPage,
    CollectionStats,
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


class DataOperations(Protocol):
    """The calls of the data service,
    as its deployment (``DataService``) implements them and :class:`DataClient` offers them.

    mypy checks both sides against this Protocol: a signature changed on one side only is a type error.
    """

    async def create_collection(
        self,
        caller: DataCaller,
        body: CollectionCreate,
        *,
        idempotency_key: str | None = None,
        request_id: str | None = None,
    ) -> CreatedCollection:
        """A new collection owned by the caller (version 1)."""

    async def list_collections(
        self, caller: DataCaller, *, cursor: str | None = None, limit: int = 50, everyone: bool = False
    ) -> CollectionPage:
        """The collections the caller owns or is a member of, oldest first; ``everyone`` (``data:admin``): all."""

    async def get_collection(self, caller: DataCaller, collection_id: str) -> Collection:
        """The collection, if the caller owns it, is a member or holds ``data:admin``."""

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

    async def delete_collection(
        self, caller: DataCaller, collection_id: str, *, if_match: IfMatch, request_id: str | None = None
    ) -> None:
        """Delete the collection with its items and members (owner only)."""

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

    async def get_member(self, caller: DataCaller, collection_id: str, user_id: str) -> Member:
        """One member of the collection (anyone who may read the collection)."""

    async def list_members(
        self, caller: DataCaller, collection_id: str, *, cursor: str | None = None, limit: int = 50
    ) -> MemberPage:
        """The collection's members, in the order they were added (anyone who may read the collection)."""

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

    async def get_item(self, caller: DataCaller, collection_id: str, item_id: str) -> Item:
        """One item of the collection."""

    async def list_items(self, caller: DataCaller, collection_id: str, query: ItemQuery) -> ItemPage:
        """One page of the collection's items, filtered and ordered as ``query`` says."""

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
            DataOperations.create_collection,
            caller,
            body,
            idempotency_key=idempotency_key,
            request_id=request_id,
        )

    async def list_collections(
        self, caller: DataCaller, *, cursor: str | None = None, limit: int = 50, everyone: bool = False
    ) -> CollectionPage:
        """The collections the caller owns or is a member of, oldest first; ``everyone`` (``data:admin``): all."""
        return await self._call(DataOperations.list_collections, caller, cursor=cursor, limit=limit, everyone=everyone)

    async def get_collection(self, caller: DataCaller, collection_id: str) -> Collection:
        """The collection, if the caller owns it, is a member or holds ``data:admin``."""
        return await self._call(DataOperations.get_collection, caller, collection_id)

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
            DataOperations.update_collection, caller, collection_id, patch, if_match=if_match, request_id=request_id
        )

    async def delete_collection(
        self, caller: DataCaller, collection_id: str, *, if_match: IfMatch, request_id: str | None = None
    ) -> None:
        """Delete the collection with its items and members (owner only)."""
        await self._call(
            DataOperations.delete_collection, caller, collection_id, if_match=if_match, request_id=request_id
        )

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
            DataOperations.put_member,
            caller,
            collection_id,
            user_id,
            role,
            if_match=if_match,
            request_id=request_id,
        )

    async def get_member(self, caller: DataCaller, collection_id: str, user_id: str) -> Member:
        """One member of the collection (anyone who may read the collection)."""
        return await self._call(DataOperations.get_member, caller, collection_id, user_id)

    async def list_members(
        self, caller: DataCaller, collection_id: str, *, cursor: str | None = None, limit: int = 50
    ) -> MemberPage:
        """The collection's members, in the order they were added (anyone who may read the collection)."""
        return await self._call(DataOperations.list_members, caller, collection_id, cursor=cursor, limit=limit)

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
        await self._call(
            DataOperations.remove_member, caller, collection_id, user_id, if_match=if_match, request_id=request_id
        )

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
            DataOperations.create_item,
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
            DataOperations.create_items,
            caller,
            collection_id,
            body,
            idempotency_key=idempotency_key,
            request_id=request_id,
        )

    async def get_item(self, caller: DataCaller, collection_id: str, item_id: str) -> Item:
        """One item of the collection."""
        return await self._call(DataOperations.get_item, caller, collection_id, item_id)

    async def list_items(self, caller: DataCaller, collection_id: str, query: ItemQuery) -> ItemPage:
        """One page of the collection's items, filtered and ordered as ``query`` says."""
        return await self._call(DataOperations.list_items, caller, collection_id, query)

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
            DataOperations.replace_item, caller, collection_id, item_id, body, if_match=if_match, request_id=request_id
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
            DataOperations.patch_item, caller, collection_id, item_id, patch, if_match=if_match, request_id=request_id
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
        await self._call(
            DataOperations.delete_item, caller, collection_id, item_id, if_match=if_match, request_id=request_id
        )


def _offers(client: DataClient) -> DataOperations:
    """Never called: mypy checks here that the client offers every call of the Protocol, with its signature."""
    return client


class StatsOperations(Protocol):
    """The calls of the data application's processing deployment (``DataProcessing``), as it implements them and
    :class:`StatsClient` offers them. It scales on CPU, apart from :class:`DataOperations`."""

    async def collection_stats(self, caller: DataCaller, collection_id: str) -> CollectionStats:
        """Counts by tag and a summary per numeric attribute; ``CollectionNotFound`` for a stranger."""


class StatsClient(ServiceClient):
    """The data application's processing deployment: collection statistics."""

    app = "data"
    deployment = "DataProcessing"
    __slots__ = ()

    async def collection_stats(self, caller: DataCaller, collection_id: str) -> CollectionStats:
        """Counts by tag and a summary per numeric attribute; ``CollectionNotFound`` for a stranger."""
        return await self._call(StatsOperations.collection_stats, caller, collection_id)


def _offers_stats(client: StatsClient) -> StatsOperations:
    """Never called: mypy checks here that the client offers every call of the Protocol, with its signature."""
    return client
