"""The data service as a Serve deployment (an application without an HTTP route, reached by handle).

Thin: each method runs one unit of work of :mod:`~strata.serve_apps.data._collections`,
:mod:`~strata.serve_apps.data._members` or :mod:`~strata.serve_apps.data._items` with the limits this replica read
from its settings; callers reach it through :class:`~strata.serve_apps.data.DataClient` (same names, same
signatures). Besides its calls, a replica prunes expired idempotency keys every few minutes. Checks of items against
their collection's schema run on a thread of the replica's own (``ItemChecks``), never on the event loop that answers
the other requests and Serve's health checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pydantic import JsonValue
from ray import serve

from strata.actors.postgres import DatabaseError
from strata.contracts import DataOperations
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
from strata.serve_apps._entry import service_app
from strata.serve_apps._replica import ServiceReplica
from strata.serve_apps.data import _collections, _items, _members
from strata.serve_apps.data._idempotency import prune_expired_keys
from strata.serve_apps.data._item_schemas import ItemChecks
from strata.serve_apps.data._limits import DataLimits
from strata.serve_apps.data._processing import DataProcessing

logger = logging.getLogger(__name__)

PRUNE_INTERVAL_S = 300.0
PRUNE_BATCH = 1000


@serve.deployment  # its options are in cluster/serve.yaml, the one place for them
class DataService(ServiceReplica):
    """Replica of the data service; owns schema ``data`` and keeps its consumer group of users events running."""

    service = "data"

    async def __init__(self) -> None:  # type: ignore[misc]  # Serve awaits an async constructor
        await super().__init__()
        self._limits = DataLimits.from_settings(self._settings)
        self._checks = ItemChecks.dedicated()
        self._pruner: asyncio.Task[None] | None = asyncio.get_running_loop().create_task(self._prune_forever())

    async def _prune_forever(self) -> None:
        """Delete expired idempotency keys in bounded batches, every few minutes, until the replica stops."""
        while True:
            await asyncio.sleep(PRUNE_INTERVAL_S)
            try:
                pruned = PRUNE_BATCH
                while pruned == PRUNE_BATCH:  # a backlog goes in bounded batches, one transaction each
                    pruned = await self._db.run_in_transaction(prune_expired_keys, batch=PRUNE_BATCH)
            except asyncio.CancelledError:
                raise
            except DatabaseError as exc:  # PostgreSQL away: the next round tries again
                logger.warning("pruning idempotency keys failed (%s); retrying later", type(exc).__name__)
            except Exception:
                logger.exception("pruning idempotency keys failed; retrying later")

    async def __del__(self) -> None:
        pruner = getattr(self, "_pruner", None)
        if pruner is not None:
            pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pruner
        checks = getattr(self, "_checks", None)
        if checks is not None:
            checks.close()
        await super().__del__()

    # --- collections ------------------------------------------------------------------------------------------------

    async def create_collection(
        self,
        caller: DataCaller,
        body: CollectionCreate,
        *,
        idempotency_key: str | None = None,
        request_id: str | None = None,
    ) -> CreatedCollection:
        return await self.db.run_in_transaction(
            _collections.create_collection,
            caller,
            body,
            limits=self._limits,
            idempotency_key=idempotency_key,
            request_id=request_id,
        )

    async def list_collections(
        self, caller: DataCaller, *, cursor: str | None = None, limit: int = 50, everyone: bool = False
    ) -> CollectionPage:
        return await self.db.read(
            _collections.list_collections, caller, limits=self._limits, cursor=cursor, limit=limit, everyone=everyone
        )

    async def get_collection(self, caller: DataCaller, collection_id: str) -> Collection:
        return await self.db.read(_collections.get_collection, caller, collection_id)

    async def update_collection(
        self,
        caller: DataCaller,
        collection_id: str,
        patch: dict[str, JsonValue],
        *,
        if_match: IfMatch,
        request_id: str | None = None,
    ) -> Collection:
        return await self.db.run_in_transaction(
            _collections.update_collection,
            caller,
            collection_id,
            patch,
            limits=self._limits,
            if_match=if_match,
            request_id=request_id,
        )

    async def delete_collection(
        self, caller: DataCaller, collection_id: str, *, if_match: IfMatch, request_id: str | None = None
    ) -> None:
        await self.db.run_in_transaction(
            _collections.delete_collection, caller, collection_id, if_match=if_match, request_id=request_id
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
        return await self.db.run_in_transaction(
            _members.put_member, caller, collection_id, user_id, role, if_match=if_match, request_id=request_id
        )

    async def get_member(self, caller: DataCaller, collection_id: str, user_id: str) -> Member:
        return await self.db.read(_members.get_member, caller, collection_id, user_id)

    async def list_members(
        self, caller: DataCaller, collection_id: str, *, cursor: str | None = None, limit: int = 50
    ) -> MemberPage:
        return await self.db.read(
            _members.list_members, caller, collection_id, limits=self._limits, cursor=cursor, limit=limit
        )

    async def remove_member(
        self,
        caller: DataCaller,
        collection_id: str,
        user_id: str,
        *,
        if_match: IfMatch | None = None,
        request_id: str | None = None,
    ) -> None:
        await self.db.run_in_transaction(
            _members.remove_member, caller, collection_id, user_id, if_match=if_match, request_id=request_id
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
        return await self.db.run_in_transaction(
            _items.create_item,
            caller,
            collection_id,
            body,
            limits=self._limits,
            idempotency_key=idempotency_key,
            request_id=request_id,
            checks=self._checks,
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
        return await self.db.run_in_transaction(
            _items.create_items,
            caller,
            collection_id,
            body,
            limits=self._limits,
            idempotency_key=idempotency_key,
            request_id=request_id,
            checks=self._checks,
        )

    async def get_item(self, caller: DataCaller, collection_id: str, item_id: str) -> Item:
        return await self.db.read(_items.get_item, caller, collection_id, item_id)

    async def list_items(self, caller: DataCaller, collection_id: str, query: ItemQuery) -> ItemPage:
        return await self.db.read(_items.list_items, caller, collection_id, query, limits=self._limits)

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
        return await self.db.run_in_transaction(
            _items.replace_item,
            caller,
            collection_id,
            item_id,
            body,
            limits=self._limits,
            if_match=if_match,
            request_id=request_id,
            checks=self._checks,
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
        return await self.db.run_in_transaction(
            _items.patch_item,
            caller,
            collection_id,
            item_id,
            patch,
            limits=self._limits,
            if_match=if_match,
            request_id=request_id,
            checks=self._checks,
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
        await self.db.run_in_transaction(
            _items.delete_item, caller, collection_id, item_id, if_match=if_match, request_id=request_id
        )


app = service_app(DataService, DataProcessing)


def _implements(service: DataService) -> DataOperations:
    """Never called: mypy checks here that the deployment implements every call of its contract, with its signature
    (the class as written: ``@serve.deployment`` leaves what mypy sees of it unchanged)."""
    return service
