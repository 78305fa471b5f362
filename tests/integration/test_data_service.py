"""The data service's contract through its typed client: items round-trip, and 'no such item' is its own 404."""

from __future__ import annotations

import uuid

import pytest

from strata.schemas import Item, ItemNotFound, ResourceNotFound
from strata.serve_apps.data import DataClient
from tests.conftest import System

pytestmark = pytest.mark.integration


async def test_an_item_is_created_read_changed_and_deleted(system: System, ray_driver: None) -> None:
    data = DataClient()
    owner = f"data-{uuid.uuid4().hex[:6]}"

    created = await data.create_item(owner, "note", {"text": "hi", "tags": ["a", 1, None]}, request_id="req-data-1")
    read = await data.get_item(created.id)
    changed = await data.update_item(created.id.upper(), [1, 2.5, {"x": True}], request_id="req-data-2")
    await data.delete_item(created.id, request_id="req-data-3")

    assert isinstance(created, Item) and read == created
    assert (created.owner_id, created.kind, created.version) == (owner, "note", 1)
    assert created.body == {"text": "hi", "tags": ["a", 1, None]}
    assert changed.id == created.id and changed.version == 2 and changed.body == [1, 2.5, {"x": True}]
    with pytest.raises(ItemNotFound):
        await data.get_item(created.id)


@pytest.mark.parametrize("item_id", [str(uuid.uuid4()), "not-a-uuid", ""])
async def test_every_call_on_no_such_item_is_item_not_found(system: System, ray_driver: None, item_id: str) -> None:
    data = DataClient()

    for call in (data.get_item(item_id), data.update_item(item_id, {"n": 1}), data.delete_item(item_id)):
        with pytest.raises(ItemNotFound) as caught:
            await call
        assert isinstance(caught.value, ResourceNotFound) and caught.value.status == 404
        assert type(caught.value) is ItemNotFound  # the service's own error, not Ray's wrapper of it
