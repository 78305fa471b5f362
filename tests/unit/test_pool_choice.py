"""The pool-actor client's choice logic and sizing, without Ray."""

from __future__ import annotations

import pytest

from strata.actors.postgres import PoolActorDatabase, pool_size_for


def test_pool_size_splits_the_budget_across_max_replicas() -> None:
    assert pool_size_for(12, 1) == 12
    assert pool_size_for(12, 4) == 3
    assert pool_size_for(12, 5) == 2
    assert pool_size_for(2, 8) == 1  # never zero


@pytest.mark.parametrize(("budget", "replicas"), [(0, 1), (4, 0)])
def test_pool_size_refuses_nonsense(budget: int, replicas: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        pool_size_for(budget, replicas)


def test_the_actor_with_fewest_calls_in_flight_is_chosen() -> None:
    db = PoolActorDatabase("data", actors=3, connections=6)
    db._in_flight = [4, 1, 2]
    assert {db._choose() for _ in range(50)} == {1}


def test_ties_are_broken_at_random() -> None:
    db = PoolActorDatabase("data", actors=3, connections=6)
    db._in_flight = [2, 0, 0]
    assert {db._choose() for _ in range(200)} == {1, 2}


def test_connections_must_cover_the_actors() -> None:
    with pytest.raises(ValueError, match="at least actors"):
        PoolActorDatabase("data", actors=4, connections=3)


async def test_a_closed_client_refuses_calls() -> None:
    from strata.actors.postgres import DatabaseUnavailable

    db = PoolActorDatabase("data", actors=1, connections=1)
    await db.aclose()
    await db.aclose()  # safe twice
    with pytest.raises(DatabaseUnavailable, match="closed"):
        await db.fetchval("SELECT 1")
