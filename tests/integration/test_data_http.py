"""The data routes' HTTP guarantees against the running system: conditional requests, idempotent POSTs, stable
cursor pages under concurrent inserts, and hostile input answered as 4xx problems (issue 11, Must show 1, 2, 3, 8)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from strata.schemas.events import ITEM_CREATED
from tests.conftest import System
from tests.integration.accounts import Account, account, call, is_problem

pytestmark = pytest.mark.integration


async def _collection(client: httpx.AsyncClient, owner: Account, **body: Any) -> dict[str, Any]:
    response = await call(client, "POST", "/v1/collections", owner, json={"name": f"c-{uuid.uuid4().hex[:8]}", **body})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _item(client: httpx.AsyncClient, owner: Account, collection_id: str, **body: Any) -> httpx.Response:
    return await call(
        client, "POST", f"/v1/collections/{collection_id}/items", owner, json={"title": "an item", **body}
    )


async def _admin_count(system: System, query: str, *args: Any) -> int:
    conn = await asyncpg.connect(system.admin_dsn)
    try:
        return int(await conn.fetchval(query, *args))
    finally:
        await conn.close()


# --- Must show 1: conditional requests ------------------------------------------------------------------------------


async def test_twenty_concurrent_patches_with_one_if_match_give_one_200_and_nineteen_412(
    system: System, ray_driver: None
) -> None:
    owner = await account(system)
    async with system.async_client() as client:
        collection = await _collection(client, owner)
        created = await _item(client, owner, collection["id"])
        assert created.status_code == 201 and created.headers["etag"] == '"1"'
        path = f"/v1/collections/{collection['id']}/items/{created.json()['id']}"

        async def patch(n: int) -> httpx.Response:
            return await call(
                client,
                "PATCH",
                path,
                owner,
                headers={"If-Match": '"1"', "Content-Type": "application/merge-patch+json"},
                content=f'{{"title": "patched {n}"}}',
            )

        answers = await asyncio.gather(*(patch(n) for n in range(20)))
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200] + [412] * 19, statuses
        assert all(is_problem(a) for a in answers if a.status_code == 412)
        winner = next(a for a in answers if a.status_code == 200)
        assert winner.headers["etag"] == '"2"' and winner.json()["version"] == 2

        unconditional = await call(client, "PATCH", path, owner, json={"title": "no precondition"})
        assert unconditional.status_code == 428 and is_problem(unconditional)

        current = await call(client, "GET", path, owner)
        assert current.status_code == 200 and current.headers["etag"] == '"2"'
        assert current.headers["vary"] == "Authorization"
        assert current.json()["title"] == winner.json()["title"]
        for tag in ('"2"', 'W/"2"', '"1", "2"', "*"):
            cached = await call(client, "GET", path, owner, headers={"If-None-Match": tag})
            assert cached.status_code == 304, tag
            assert cached.content == b"" and cached.headers["etag"] == '"2"'
        stale = await call(client, "GET", path, owner, headers={"If-None-Match": '"1"'})
        assert stale.status_code == 200 and stale.json()["version"] == 2

        collection_path = f"/v1/collections/{collection['id']}"
        assert (await call(client, "DELETE", collection_path, owner)).status_code == 428
        assert (await call(client, "DELETE", collection_path, owner, headers={"If-Match": '"7"'})).status_code == 412
        assert (await call(client, "DELETE", path, owner, headers={"If-Match": '"2"'})).status_code == 204


# --- Must show 2: idempotent POSTs ----------------------------------------------------------------------------------


async def test_the_same_post_with_the_same_idempotency_key_makes_one_item_and_one_event(
    system: System, ray_driver: None
) -> None:
    owner = await account(system)
    async with system.async_client() as client:
        for concurrency in (2, 10):
            collection = await _collection(client, owner)
            key = f"key-{uuid.uuid4().hex}"
            body = {"title": f"once {concurrency}", "attributes": {"n": concurrency}}

            async def post(body: dict[str, Any] = body, key: str = key, cid: str = collection["id"]) -> httpx.Response:
                return await call(
                    client, "POST", f"/v1/collections/{cid}/items", owner, headers={"Idempotency-Key": key}, json=body
                )

            if concurrency == 2:
                answers = [await post(), await post()]  # one after the other
            else:
                answers = list(await asyncio.gather(*(post() for _ in range(concurrency))))
            assert [a.status_code for a in answers] == [201] * concurrency, [a.text for a in answers]
            assert len({a.content for a in answers}) == 1, "every answer carries the same body"
            assert len({a.headers["location"] for a in answers}) == 1
            replays = [a for a in answers if a.headers.get("idempotent-replayed") == "true"]
            assert len(replays) == concurrency - 1
            rows = await _admin_count(
                system, "SELECT count(*) FROM data.items WHERE collection_id = $1", uuid.UUID(collection["id"])
            )
            assert rows == 1
            events = await _admin_count(
                system,
                "SELECT count(*) FROM data.outbox WHERE key = $1 AND position($2::bytea IN payload) > 0",
                collection["id"],
                ITEM_CREATED.type.encode(),
            )
            assert events == 1

            reused = await post({"title": "another body"})
            assert reused.status_code == 422 and is_problem(reused)
            assert reused.json()["code"] == "idempotency-key-reused"


async def test_an_idempotent_replay_is_authorized_like_a_fresh_request(system: System, ray_driver: None) -> None:
    """An editor removed from the collection, or made a viewer, replaying its POST with the same Idempotency-Key
    gets what a fresh request gets (404, 403), not the stored 201."""
    owner, editor, demoted = await account(system), await account(system), await account(system)
    async with system.async_client() as client:
        collection = await _collection(client, owner)
        cid = collection["id"]
        for member in (editor, demoted):
            path = f"/v1/collections/{cid}/members/{member.user_id}"
            assert (await call(client, "PUT", path, owner, json={"role": "editor"})).status_code == 201

        async def post(who: Account, path: str, body: dict[str, Any]) -> httpx.Response:
            return await call(client, "POST", path, who, headers={"Idempotency-Key": f"k-{who.user_id}"}, json=body)

        single, batch = f"/v1/collections/{cid}/items", f"/v1/collections/{cid}/items/batch"
        item, items = {"title": "by an editor"}, {"items": [{"title": "one"}, {"title": "two"}]}
        for who in (editor, demoted):
            assert (await post(who, single, item)).status_code == 201
            replayed = await post(who, single, item)
            assert replayed.status_code == 201 and replayed.headers.get("idempotent-replayed") == "true"
        batch_editor = await call(client, "POST", batch, editor, headers={"Idempotency-Key": "batch-key"}, json=items)
        assert batch_editor.is_success, batch_editor.text

        removed = await call(client, "DELETE", f"/v1/collections/{cid}/members/{editor.user_id}", owner)
        assert removed.is_success, removed.text
        changed = await call(
            client, "PUT", f"/v1/collections/{cid}/members/{demoted.user_id}", owner, json={"role": "viewer"}
        )
        assert changed.is_success, changed.text

        gone = await post(editor, single, item)
        assert gone.status_code == 404 and is_problem(gone), gone.text  # a stranger again: the collection is hidden
        gone_batch = await call(client, "POST", batch, editor, headers={"Idempotency-Key": "batch-key"}, json=items)
        assert gone_batch.status_code == 404 and is_problem(gone_batch), gone_batch.text
        viewer = await post(demoted, single, item)
        assert viewer.status_code == 403 and is_problem(viewer), viewer.text
        assert "idempotent-replayed" not in viewer.headers
        rows = await _admin_count(system, "SELECT count(*) FROM data.items WHERE collection_id = $1", uuid.UUID(cid))
        assert rows == 4  # the two first answers and the batch: the refused replays made nothing


# --- Must show 3: stable cursor pages -------------------------------------------------------------------------------


async def test_paging_while_200_items_are_inserted_lists_every_earlier_item_once_in_order(
    system: System, ray_driver: None
) -> None:
    owner = await account(system)
    limits = httpx.Limits(max_connections=256)
    async with system.async_client(timeout=60, limits=limits) as client:
        collection = await _collection(client, owner)
        items_path = f"/v1/collections/{collection['id']}/items"
        batch = await call(
            client, "POST", f"{items_path}/batch", owner, json={"items": [{"title": f"old {n}"} for n in range(60)]}
        )
        assert batch.status_code == 200, batch.text
        before = await call(client, "GET", items_path, owner, params={"limit": 200})
        existing = [item["id"] for item in before.json()["items"]]
        assert len(existing) == 60 and before.json()["next_cursor"] is None

        # All 200 inserts are sent at once, and the listing pages through while they are in flight (the data
        # service queues what it does not run at once: serve.yaml's max_queued_requests for DataService).
        inserts = [asyncio.create_task(_item(client, owner, collection["id"], title=f"new {n}")) for n in range(200)]
        listed: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 7, **({"cursor": cursor} if cursor else {})}
            page = await call(client, "GET", items_path, owner, params=params)
            assert page.status_code == 200, page.text
            listed += [item["id"] for item in page.json()["items"]]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        answers = await asyncio.gather(*inserts)
        assert [a.status_code for a in answers] == [201] * 200, {a.status_code: a.text[:200] for a in answers}

        earlier = [item_id for item_id in listed if item_id in set(existing)]
        assert earlier == existing, "every earlier item exactly once, in the listing's order"
        assert len(listed) == len(set(listed)), "no item twice"

        first = await call(client, "GET", items_path, owner, params={"limit": 5})
        token = first.json()["next_cursor"]
        tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
        for bad in (tampered, "not-a-cursor", token + "x"):
            refused = await call(client, "GET", items_path, owner, params={"limit": 5, "cursor": bad})
            assert refused.status_code == 400 and is_problem(refused), (bad, refused.text)


# --- Must show 8: hostile input -------------------------------------------------------------------------------------


async def test_hostile_input_is_a_clear_4xx_problem_never_a_500(system: System, ray_driver: None) -> None:
    owner = await account(system)
    async with system.async_client() as client:
        schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
        collection = await _collection(client, owner, item_schema=schema)
        items = f"/v1/collections/{collection['id']}/items"
        item = (await _item(client, owner, collection["id"], attributes={"n": 1})).json()
        item_path = f"{items}/{item['id']}"
        json_type = {"Content-Type": "application/json"}

        def nested(depth: int) -> str:
            return "[" * depth + "]" * depth

        cases: dict[str, tuple[str, str, dict[str, Any]]] = {
            "10,000 [ as the body": ("POST", items, {"content": nested(10_000), "headers": json_type}),
            "10,000 [ in attributes": (
                "POST",
                items,
                {"content": '{"title": "t", "attributes": {"a": ' + nested(10_000) + "}}", "headers": json_type},
            ),
            "900 levels (past the parser's own guard)": (
                "POST",
                items,
                {"content": '{"title": "t", "attributes": {"a": ' + nested(900) + "}}", "headers": json_type},
            ),
            "attributes one level too deep for the service": (
                "POST",
                f"/v1/collections/{(await _collection(client, owner))['id']}/items",
                {"json": {"title": "t", "attributes": {"a": orjson.loads(nested(18))}}},
            ),
            "10,000 { in a merge patch": (
                "PATCH",
                item_path,
                {
                    "content": '{"a":' * 10_000 + "1" + "}" * 10_000,
                    "headers": {"If-Match": '"1"', "Content-Type": "application/merge-patch+json"},
                },
            ),
            "oversized attributes": (
                "POST",
                items,
                {"json": {"title": "t", "attributes": {"n": 1, "s": "x" * 40_000}}},
            ),
            "attributes the schema refuses": ("POST", items, {"json": {"title": "t", "attributes": {"n": "one"}}}),
            "a huge item schema": (
                "POST",
                "/v1/collections",
                {"json": {"name": "huge", "item_schema": {"description": "x" * 40_000}}},
            ),
            "an item schema that does not compile": (
                "POST",
                "/v1/collections",
                {"json": {"name": "broken", "item_schema": {"type": 12}}},
            ),
            "an invalid collection UUID": ("GET", "/v1/collections/not-a-uuid", {}),
            "an invalid item UUID": ("GET", f"{items}/123", {}),
            "an invalid cursor": ("GET", items, {"params": {"cursor": "%%%"}}),
            "a cursor of another listing": ("GET", "/v1/collections", {"params": {"cursor": "W1sieCJdXQ"}}),
            "an attributes filter that is no object": ("GET", items, {"params": {"attributes": "[1]"}}),
            "an attributes filter that is no JSON": ("GET", items, {"params": {"attributes": "{nope"}}),
            "a body that is no JSON": ("POST", items, {"content": b"{title", "headers": json_type}),
            "invalid UTF-8 in a body": ("POST", items, {"content": b'{"title": "\xff"}', "headers": json_type}),
            "a lone surrogate": ("POST", items, {"content": b'{"title": "\\ud800"}', "headers": json_type}),
            "NaN": ("POST", items, {"content": b'{"title": "t", "attributes": {"n": NaN}}', "headers": json_type}),
            "a JSON Patch sent to a merge-patch route": (
                "PATCH",
                item_path,
                {
                    "content": b'[{"op": "replace", "path": "/title", "value": "x"}]',
                    "headers": {"If-Match": '"1"', "Content-Type": "application/json-patch+json"},
                },
            ),
            "a merge patch that is no object": (
                "PATCH",
                item_path,
                {"content": b"[1]", "headers": {"If-Match": '"1"', "Content-Type": "application/merge-patch+json"}},
            ),
            "a form body": ("POST", items, {"content": b"title=x", "headers": {"Content-Type": "text/plain"}}),
            "a page too large": ("GET", items, {"params": {"limit": 100_000}}),
            "a batch too large": ("POST", f"{items}/batch", {"json": {"items": [{"title": "t"}] * 1000}}),
        }
        failures = []
        for name, (method, path, kwargs) in cases.items():
            response = await call(client, method, path, owner, **kwargs)
            if not (400 <= response.status_code < 500 and is_problem(response)):
                failures.append(f"{name}: {response.status_code} {response.text[:200]}")
        assert failures == []
        patch_415 = await call(
            client, "PATCH", item_path, owner, **cases["a JSON Patch sent to a merge-patch route"][2]
        )
        assert patch_415.status_code == 415
        assert patch_415.headers["accept-patch"] == "application/merge-patch+json, application/json"
        assert (await call(client, "GET", item_path, owner)).json()["version"] == 1, "no hostile call changed it"
