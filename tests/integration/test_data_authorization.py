"""Who may call which data route, over HTTP (issue 11, Must show 4): every data route of the routing table for the
collection's owner, an editor, a viewer, a stranger, an administrator (``data:admin``: reads everything, writes
nothing of others) and anonymous. test_authorization.py covers every other route and points here.

The route's permission is checked at the edge (``data:read`` / ``data:write``, which every account here holds); the
caller's role in the collection by the data service: a stranger cannot tell the collection exists (404), a member
whose role does not allow the change gets 403.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from strata.serve_apps.gateway._access import ROUTES
from tests.conftest import System
from tests.integration.accounts import Account, account, call

pytestmark = pytest.mark.integration

CALLERS = ("owner", "editor", "viewer", "stranger", "admin", "anonymous")
READ = {"owner": "2xx", "editor": "2xx", "viewer": "2xx", "stranger": "404", "admin": "2xx", "anonymous": "401"}
OWNER_ONLY = {"owner": "2xx", "editor": "403", "viewer": "403", "stranger": "404", "admin": "403", "anonymous": "401"}
ITEM_WRITE = {"owner": "2xx", "editor": "2xx", "viewer": "403", "stranger": "404", "admin": "403", "anonymous": "401"}
ANY_ACCOUNT = {who: "2xx" for who in CALLERS} | {"anonymous": "401"}

EXPECTED: dict[tuple[str, str], dict[str, str]] = {
    ("POST", "/v1/collections"): ANY_ACCOUNT,
    ("GET", "/v1/collections"): ANY_ACCOUNT,
    ("GET", "/v1/collections/{collection_id}"): READ,
    ("GET", "/v1/collections/{collection_id}/stats"): READ,
    ("PATCH", "/v1/collections/{collection_id}"): OWNER_ONLY,
    ("DELETE", "/v1/collections/{collection_id}"): OWNER_ONLY,
    ("GET", "/v1/collections/{collection_id}/members"): READ,
    ("GET", "/v1/collections/{collection_id}/members/{user_id}"): READ,
    ("PUT", "/v1/collections/{collection_id}/members/{user_id}"): OWNER_ONLY,
    ("DELETE", "/v1/collections/{collection_id}/members/{user_id}"): OWNER_ONLY,
    ("POST", "/v1/collections/{collection_id}/items"): ITEM_WRITE,
    ("GET", "/v1/collections/{collection_id}/items"): READ,
    ("POST", "/v1/collections/{collection_id}/items/batch"): ITEM_WRITE,
    ("GET", "/v1/collections/{collection_id}/items/{item_id}"): READ,
    ("PUT", "/v1/collections/{collection_id}/items/{item_id}"): ITEM_WRITE,
    ("PATCH", "/v1/collections/{collection_id}/items/{item_id}"): ITEM_WRITE,
    ("DELETE", "/v1/collections/{collection_id}/items/{item_id}"): ITEM_WRITE,
}
"""What each caller gets from each data route (``2xx``, or the problem's status)."""

DATA_ROUTES = {(route.method, route.path) for route in ROUTES if route.app == "data"}


def test_the_matrix_names_every_data_route_of_the_routing_table() -> None:
    assert set(EXPECTED) == DATA_ROUTES
    assert all(set(row) == set(CALLERS) for row in EXPECTED.values())


class _World:
    """The owner's collections (each shared with the editor and the viewer), made fresh for each destructive call."""

    def __init__(self, client: httpx.AsyncClient, people: dict[str, Account]) -> None:
        self.client = client
        self.people = people
        self.target: Account | None = None

    async def collection(self) -> dict[str, Any]:
        owner = self.people["owner"]
        made = await call(self.client, "POST", "/v1/collections", owner, json={"name": "matrix"})
        assert made.status_code == 201, made.text
        collection: dict[str, Any] = made.json()
        for role in ("editor", "viewer"):
            path = f"/v1/collections/{collection['id']}/members/{self.people[role].user_id}"
            shared = await call(self.client, "PUT", path, owner, json={"role": role})
            assert shared.status_code == 201, shared.text
        collection["version"] = (await call(self.client, "GET", f"/v1/collections/{collection['id']}", owner)).json()[
            "version"
        ]
        return collection

    async def item(self, collection_id: str) -> dict[str, Any]:
        made = await call(
            self.client, "POST", f"/v1/collections/{collection_id}/items", self.people["owner"], json={"title": "m"}
        )
        assert made.status_code == 201, made.text
        item: dict[str, Any] = made.json()
        return item


async def _request(world: _World, method: str, path: str, who: Account | None) -> httpx.Response:
    collection = await world.collection()
    cid = collection["id"]
    headers: dict[str, str] = {}
    body: dict[str, Any] | None = None
    member = world.people["viewer"].user_id
    if path.endswith("{user_id}") and method in ("PUT", "DELETE"):
        assert world.target is not None
        member = world.target.user_id  # a third user, so nobody removes or changes themself
        if method == "DELETE":
            put = f"/v1/collections/{cid}/members/{member}"
            assert (await call(world.client, "PUT", put, world.people["owner"], json={"role": "viewer"})).is_success
    concrete = path.replace("{collection_id}", cid).replace("{user_id}", member)
    if "{item_id}" in path:
        item = await world.item(cid)
        concrete = concrete.replace("{item_id}", item["id"])
        headers["If-Match"] = f'"{item["version"]}"'
    elif path == "/v1/collections/{collection_id}" and method in ("PATCH", "DELETE"):
        headers["If-Match"] = f'"{collection["version"]}"'
    if method == "PATCH":
        body = {"title": "patched"} if "{item_id}" in path else {"description": "patched"}
    elif method == "PUT" and "{item_id}" in path:
        body = {"title": "replaced", "attributes": {}, "tags": []}
    elif method == "PUT":
        body = {"role": "editor"}
    elif path.endswith("/batch"):
        body = {"items": [{"title": "one"}, {"title": "two"}]}
    elif method == "POST" and path.endswith("/items"):
        body = {"title": "new"}
    elif method == "POST":
        body = {"name": "made by the matrix"}
    return await call(world.client, method, concrete, who, headers=headers, json=body)


async def test_every_data_route_for_every_kind_of_caller(system: System, ray_driver: None) -> None:
    people = {name: await account(system) for name in ("owner", "editor", "viewer", "stranger")}
    people["admin"] = await account(system, "admin")
    async with system.async_client(timeout=60) as client:
        world = _World(client, people)
        world.target = await account(system)
        failures = []
        for (method, path), row in sorted(EXPECTED.items()):
            for who_name in CALLERS:
                who = people.get(who_name)
                response = await _request(world, method, path, who)
                got = "2xx" if response.is_success else str(response.status_code)
                if got != row[who_name]:
                    failures.append(
                        f"{method} {path} as {who_name}: expected {row[who_name]}, got {response.text[:160]}"
                    )
        for who_name in CALLERS:  # every collection, for data:admin only
            response = await call(client, "GET", "/v1/collections", people.get(who_name), params={"scope": "all"})
            expected = {"admin": 200, "anonymous": 401}.get(who_name, 403)
            if response.status_code != expected:
                failures.append(
                    f"GET /v1/collections?scope=all as {who_name}: expected {expected}, got {response.status_code}"
                )
    assert failures == []
