"""The typed client of the data service: one method per call of :class:`DataService`, one hop away."""

from __future__ import annotations

from pydantic import JsonValue

from strata.schemas import Item
from strata.serve_apps._client import ServiceClient


class DataClient(ServiceClient):
    """Store, read, change and delete data items; every change records its event in the service's outbox.

    Errors arrive as the service raised them: :class:`~strata.schemas.ItemNotFound` (no such item, or an id that
    is no UUID), :class:`~strata.schemas.ServiceUnavailable` (the service refused the call). ``request_id`` is the
    HTTP request that caused a change; it travels on the change's event.
    """

    app = "data"
    __slots__ = ()

    async def create_item(self, owner_id: str, kind: str, body: JsonValue, *, request_id: str | None = None) -> Item:
        """A new item of ``kind`` holding the JSON document ``body``, owned by ``owner_id`` (version 1)."""
        return await self._call(Item, "create_item", owner_id, kind, body, request_id=request_id)

    async def get_item(self, item_id: str) -> Item:
        """The item ``item_id``."""
        return await self._call(Item, "get_item", item_id)

    async def update_item(self, item_id: str, body: JsonValue, *, request_id: str | None = None) -> Item:
        """The item after replacing its body (its version goes up by one)."""
        return await self._call(Item, "update_item", item_id, body, request_id=request_id)

    async def delete_item(self, item_id: str, *, request_id: str | None = None) -> None:
        """Delete the item ``item_id``."""
        await self._call_none("delete_item", item_id, request_id=request_id)
