"""``GET /v1/collections/{id}/stats`` against the running system: the figures are the standard library's on the same
items, a repeated call is served from the processing replica's cache, and an item change drops it (issue 13, Must
show 5)."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.conftest import System
from tests.integration.accounts import Account, account, call, is_problem
from tests.integration.standbys import counted, counter

pytestmark = pytest.mark.integration

ITEMS = 250
TAGS = ("red", "green", "blue", "round", "square")
FORGED_CALLS = 5
EVENT_WAIT_S = 30.0
"""Bound on the item event's trip (commit -> outbox relay -> Kafka -> the processing replicas): typically well under
a second; the bound only keeps a broken feed from hanging the test."""


def _items(rng: random.Random) -> list[dict[str, Any]]:
    items = []
    for n in range(ITEMS):
        attributes: dict[str, Any] = {"price": round(rng.uniform(0, 500), 2), "label": f"n{n}"}
        if n % 3:
            attributes["weight"] = rng.randint(-20, 80)
        if n % 7 == 0:
            attributes["flag"] = True  # not a number
        items.append({"title": f"item {n}", "attributes": attributes, "tags": rng.sample(TAGS, rng.randint(0, 3))})
    return items


def _reference(items: list[dict[str, Any]], name: str) -> dict[str, float]:
    values = [float(i["attributes"][name]) for i in items if name in i["attributes"]]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "count": len(values),
        "min": min(values),
        "max": max(values),
        "mean": statistics.fmean(values),
        "p50": cuts[49],
        "p90": cuts[89],
        "p99": cuts[98],
    }


def _running(deployment: str) -> int:
    from ray import serve

    return int(serve.status().applications["data"].deployments[deployment].replica_states.get("RUNNING", 0))


async def _stats(client: httpx.AsyncClient, who: Account, collection_id: str, **headers: str) -> httpx.Response:
    return await call(client, "GET", f"/v1/collections/{collection_id}/stats", who, headers=headers)


def _figures(answer: httpx.Response) -> dict[str, Any]:
    """What the figures say, without when they were computed."""
    body: dict[str, Any] = answer.json()
    body.pop("computed_at")
    return body


async def _served_from_the_cache(client: httpx.AsyncClient, who: Account, collection_id: str) -> httpx.Response:
    """The figures once a call answers the same computation (its ``computed_at``) as the call before: served from the
    processing replica's cache.

    The events of the writes before may still be on their way (commit -> outbox relay -> Kafka -> the replica), and
    each one drops the cached figures when it arrives, although they may already hold its change: the cache cannot
    tell. So the first calls may each compute again; once the feed has caught up, a call is answered from the cache.
    Bounded by :data:`EVENT_WAIT_S`; with no cache, no two calls ever answer the same computation."""
    deadline = time.monotonic() + EVENT_WAIT_S
    before = await _stats(client, who, collection_id)
    while True:
        assert before.status_code == 200, before.text
        again = await _stats(client, who, collection_id)
        assert again.status_code == 200, again.text
        if again.json()["computed_at"] == before.json()["computed_at"]:
            assert again.json() == before.json()
            return again
        assert _figures(again) == _figures(before), "the same items, the same figures"
        assert time.monotonic() < deadline, "no call was answered from the cache"
        before = again
        await asyncio.sleep(0.2)


async def test_stats_equal_the_standard_library_are_cached_and_dropped_by_an_item_change(
    system: System, ray_driver: None
) -> None:
    owner, editor, stranger = await asyncio.gather(account(system), account(system), account(system))
    items = _items(random.Random(13))
    async with system.async_client(timeout=60) as client:
        made = await call(client, "POST", "/v1/collections", owner, json={"name": f"stats-{uuid.uuid4().hex[:6]}"})
        assert made.status_code == 201, made.text
        cid = made.json()["id"]
        created: list[dict[str, Any]] = []
        for start in range(0, ITEMS, 100):
            batch = await call(
                client, "POST", f"/v1/collections/{cid}/items/batch", owner, json={"items": items[start : start + 100]}
            )
            assert batch.status_code == 200, batch.text
            created += batch.json()["items"]

        # Answered from the processing replica's cache: the same computation, its time kept. The test session runs
        # one processing replica (each replica keeps its own cache).
        assert _running("DataProcessing") == 1
        first = await _served_from_the_cache(client, owner, cid)
        figures = first.json()
        assert figures["items"] == ITEMS and not figures["truncated"]
        assert figures["tags"] == dict(Counter(t for i in items for t in i["tags"]))
        assert sorted(figures["attributes"]) == ["price", "weight"], "labels and booleans are not numbers"
        for name in ("price", "weight"):
            summary = figures["attributes"][name]
            assert {k: summary[k] for k in _reference(items, name)} == _reference(items, name), name
            assert sum(summary["histogram"]["counts"]) == summary["count"]

        # A 304 for the figures' ETag.
        unchanged = await _stats(client, owner, cid, **{"If-None-Match": first.headers["etag"]})
        assert unchanged.status_code == 304 and unchanged.headers["etag"] == first.headers["etag"]

        # A stranger learns nothing, cached or not.
        hidden = await _stats(client, stranger, cid)
        assert hidden.status_code == 404 and is_problem(hidden)

        # Another user changes an item: the owner's session wrote nothing, so only the item's event can drop the
        # cached figures.
        member_path = f"/v1/collections/{cid}/members/{editor.user_id}"
        added = await call(client, "PUT", member_path, owner, json={"role": "editor"})
        assert added.status_code in (200, 201), added.text
        cached = await _served_from_the_cache(client, owner, cid)  # the membership's event may drop them too
        assert _figures(cached) == _figures(first)
        target = created[0]
        patch = await call(
            client,
            "PATCH",
            f"/v1/collections/{cid}/items/{target['id']}",
            editor,
            headers={"If-Match": '"1"', "Content-Type": "application/merge-patch+json"},
            content=b'{"attributes": {"price": 10000}}',
        )
        assert patch.status_code == 200, patch.text
        deadline = time.monotonic() + EVENT_WAIT_S
        while True:
            after = await _stats(client, owner, cid)
            assert after.status_code == 200, after.text
            if after.json()["attributes"]["price"]["max"] == 10000:
                break
            # (an event of an earlier write may still drop and recompute them: the same figures, another time)
            assert _figures(after) == _figures(cached), "until the item's event arrives, the figures of before"
            assert time.monotonic() < deadline, "the item's event never dropped the cached figures"
            await asyncio.sleep(0.2)
        assert after.json()["computed_at"] != figures["computed_at"]
        assert after.headers["etag"] != first.headers["etag"]
        changed = [dict(i, attributes=dict(i["attributes"])) for i in items]
        changed[0]["attributes"]["price"] = 10000
        assert {k: after.json()["attributes"]["price"][k] for k in _reference(changed, "price")} == _reference(
            changed, "price"
        )


# --- consistency tokens a client made up, and numbers at the edge of the float range ---------------------------------


async def _collection(client: httpx.AsyncClient, owner: Account, items: list[dict[str, Any]]) -> tuple[str, str]:
    """A new collection holding ``items``, and the consistency token of the write that stored them."""
    made = await call(client, "POST", "/v1/collections", owner, json={"name": f"stats-{uuid.uuid4().hex[:6]}"})
    assert made.status_code == 201, made.text
    cid: str = made.json()["id"]
    batch = await call(client, "POST", f"/v1/collections/{cid}/items/batch", owner, json={"items": items})
    assert batch.status_code == 200, batch.text
    return cid, batch.headers["strata-consistency"]


async def _settled(system: System, name: str, **labels: str) -> float:
    """``name`` once two reads three export periods apart (the session's is 2 s) agree: everything recorded before
    the call is in it, the baseline later counts are compared with. Bounded."""
    value = counter(system, name, **labels)
    for _ in range(20):
        await asyncio.sleep(6)
        again = counter(system, name, **labels)
        if again == value:
            return value
        value = again
    raise AssertionError(f"{name}{labels} kept changing: {value}")


async def test_a_forged_consistency_token_is_served_from_the_cache_and_a_huge_one_is_a_400(
    system: System, ray_driver: None
) -> None:
    owner = await account(system)
    async with system.async_client(timeout=60) as client:
        cid, written = await _collection(client, owner, [{"title": f"i{n}", "attributes": {"n": n}} for n in range(50)])
        first = await _stats(client, owner, cid)
        assert first.status_code == 200, first.text
        hits = await _settled(system, "ray_strata_stats_cache_total", outcome="hit")
        # A position no server reached: strata did not sign it, so it is ignored (before, every such call waited for
        # a standby that never reaches it, read on the primary and passed over the cache: a full recompute).
        for _ in range(FORGED_CALLS):
            forged = await _stats(client, owner, cid, **{"Strata-Consistency": "FFFFFFFF/FFFFFFFF"})
            assert forged.status_code == 200, forged.text
            assert forged.json() == first.json(), "the cached figures, computed_at included"
            assert "FFFFFFFF/FFFFFFFF" not in forged.headers.get("strata-consistency", ""), "not handed back, signed"
        # The token strata handed out for the write is honoured: the figures hold it, so the cache answers that too.
        honoured = await _stats(client, owner, cid, **{"Strata-Consistency": written})
        assert honoured.status_code == 200 and honoured.json() == first.json(), honoured.text
        # Each of them counted a cache hit (a forged call computing instead would leave the count short of this).
        await counted(system, "ray_strata_stats_cache_total", hits + FORGED_CALLS + 1, outcome="hit")
        await counted(system, "ray_strata_consistency_tokens_ignored_total", FORGED_CALLS)
        # A huge or malformed header is a 400 problem, never parsed at length, never a 500.
        for huge in ("F" * 10_000, "0/1." + "A" * 4000, "FFFFFFFF/FFFFFFFF" * 4):
            answer = await _stats(client, owner, cid, **{"Strata-Consistency": huge})
            assert answer.status_code == 400 and is_problem(answer), (huge[:20], answer.status_code, answer.text)
            assert answer.json()["type"].endswith("/invalid-consistency-token"), answer.text


async def test_three_items_of_1e308_give_finite_figures_not_a_500(system: System, ray_driver: None) -> None:
    owner = await account(system)
    async with system.async_client(timeout=60) as client:
        cid, _ = await _collection(client, owner, [{"title": f"big {n}", "attributes": {"x": 1e308}} for n in range(3)])
        answer = await _stats(client, owner, cid)  # their sum, 3e308, is past the float range
        assert answer.status_code == 200, answer.text
        assert b"Infinity" not in answer.content and b"NaN" not in answer.content
        summary = answer.json()["attributes"]["x"]
        assert summary == {
            "count": 3, "min": 1e308, "max": 1e308, "mean": 1e308, "p50": 1e308, "p90": 1e308, "p99": 1e308,
            "histogram": {"edges": [1e308, 1e308], "counts": [3]},
        }  # fmt: skip
        spread, _ = await _collection(
            client, owner, [{"title": str(x), "attributes": {"x": x}} for x in (-1.7e308, 1e308, 1.7e308)]
        )
        wide = await _stats(client, owner, spread)  # the range, 3.4e308, is past it too
        assert wide.status_code == 200, wide.text
        figures = wide.json()["attributes"]["x"]
        assert figures["p50"] == 1e308 and abs(figures["mean"] - 1e308 / 3) < 1e294
        assert sum(figures["histogram"]["counts"]) == 3 and len(figures["histogram"]["edges"]) == 11
