"""The data service as a Serve deployment (an application without an HTTP route, reached by handle).

Thin: each method runs one unit of work of :mod:`~strata.serve_apps.data._items` and answers an
:class:`~strata.schemas.Item`; callers reach it through :class:`~strata.serve_apps.data.DataClient`.
"""

from __future__ import annotations

from pydantic import JsonValue
from ray import serve

from strata.schemas import Item
from strata.serve_apps._entry import service_app
from strata.serve_apps._replica import ServiceReplica
from strata.serve_apps.data import _items


@serve.deployment  # its options are in cluster/serve.yaml, the one place for them
class DataService(ServiceReplica):
    """Replica of the data service; owns schema ``data`` in PostgreSQL."""

    service = "data"

    async def create_item(self, owner_id: str, kind: str, body: JsonValue, *, request_id: str | None = None) -> Item:
        return await self.db.run_in_transaction(_items.create_item, owner_id, kind, body, request_id=request_id)

    async def update_item(self, item_id: str, body: JsonValue, *, request_id: str | None = None) -> Item:
        return await self.db.run_in_transaction(_items.update_item, item_id, body, request_id=request_id)

    async def delete_item(self, item_id: str, *, request_id: str | None = None) -> None:
        await self.db.run_in_transaction(_items.delete_item, item_id, request_id=request_id)

    async def get_item(self, item_id: str) -> Item:
        return await self.db.run_in_transaction(_items.get_item, item_id)


app = service_app(DataService)
