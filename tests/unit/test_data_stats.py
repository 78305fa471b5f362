"""Collection statistics against the standard library's own figures on the same values."""

from __future__ import annotations

import asyncio
import math
import random
import statistics

import pytest

from strata.schemas import CollectionStats
from strata.serve_apps.data._stats import StatsAccumulator, StatsCache, histogram, percentile, summarize


def _reference(values: list[float]) -> dict[str, float]:
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


@pytest.mark.parametrize("n", [2, 3, 7, 100, 101, 1234])
def test_the_summary_is_the_standard_librarys_to_the_last_bit(n: int) -> None:
    rng = random.Random(n)
    values = [rng.choice([rng.gauss(50, 20), rng.randint(-5, 5), rng.random() * 1e9]) for _ in range(n)]
    summary = summarize(values)
    assert summary.model_dump(exclude={"histogram"}) == _reference(values)
    assert sum(summary.histogram.counts) == n


def test_one_value_is_its_own_percentiles_and_one_bin() -> None:
    summary = summarize([4.5])
    assert (summary.p50, summary.p90, summary.p99, summary.mean) == (4.5, 4.5, 4.5, 4.5)
    assert summary.histogram.model_dump() == {"edges": [4.5, 4.5], "counts": [1]}
    assert percentile([1.0, 3.0], 50) == statistics.quantiles([1.0, 3.0], n=100, method="inclusive")[49]
    with pytest.raises(ValueError):
        summarize([])


def test_the_histogram_puts_every_value_in_one_equal_width_bin_and_the_largest_in_the_last() -> None:
    ordered = sorted([0.0, 1.0, 1.0, 2.5, 9.99, 10.0])
    bins = histogram(ordered, bins=10)
    assert len(bins.edges) == 11 and bins.edges[0] == 0.0 and bins.edges[-1] == 10.0
    assert bins.counts == [1, 2, 1, 0, 0, 0, 0, 0, 0, 2]
    widths = {round(b - a, 9) for a, b in zip(bins.edges, bins.edges[1:], strict=False)}
    assert widths == {1.0}
    expected = [0] * 10
    for value in ordered:
        expected[min(int(value // 1.0), 9)] += 1
    assert bins.counts == expected


def test_the_accumulator_counts_tags_once_per_item_and_numbers_only() -> None:
    stats = StatsAccumulator()
    stats.add(["a", "b", "a"], {"n": 1, "flag": True, "name": "x", "nested": {"n": 2}, "big": 2.5})
    stats.add(["b"], {"n": 3.5, "nan": math.nan})
    stats.add([], {})
    assert stats.items == 3
    assert stats.tags() == {"b": 2, "a": 1}
    summaries = stats.attributes()
    assert list(summaries) == ["big", "n"], "booleans, strings, objects and NaN are not numbers here"
    assert summaries["n"].count == 2 and summaries["n"].mean == statistics.fmean([1.0, 3.5])


def _stats(collection_id: str = "c1", items: int = 1) -> CollectionStats:
    return CollectionStats(
        collection_id=collection_id,
        items=items,
        limit=100,
        truncated=False,
        tags={},
        tags_truncated=False,
        attributes={},
        attributes_truncated=False,
        computed_at="2026-12-01T00:00:00+00:00",
    )


def test_a_cached_answer_serves_until_an_event_of_its_collection_drops_it() -> None:
    cache = StatsCache(capacity=8)
    ticket = cache.begin("c1")
    cache.finish(ticket, (_stats(), 100))
    assert cache.lookup("c1", after=None) == _stats()
    assert cache.lookup("c1", after=100) == _stats(), "the caller's write is in the figures"
    assert cache.lookup("c1", after=101) is None, "a newer write of the caller is not: computed again"
    cache.invalidate("c2")
    assert cache.lookup("c1", after=None) is not None
    cache.invalidate("c1")
    assert cache.lookup("c1", after=None) is None


def test_an_event_during_a_computation_keeps_its_figures_out_of_the_cache() -> None:
    cache = StatsCache(capacity=8)
    early = cache.begin("c1")
    cache.invalidate("c1")  # an item changed while the figures were being read
    late = cache.begin("c1")
    cache.finish(early, (_stats(items=1), 100))
    assert cache.lookup("c1", after=None) is None
    cache.finish(late, (_stats(items=2), 120))
    assert cache.lookup("c1", after=None) == _stats(items=2), "begun after the event: it holds the change"


def test_a_broken_feed_starts_a_new_epoch_and_nothing_older_answers() -> None:
    cache = StatsCache(capacity=8)
    ticket = cache.begin("c1")
    cache.new_epoch()  # the event feed broke while computing: events may be missed
    cache.finish(ticket, (_stats(), 100))
    assert cache.lookup("c1", after=None) is None
    cache.finish(cache.begin("c1"), (_stats(), 100))
    cache.new_epoch()
    assert cache.lookup("c1", after=None) is None and len(cache) == 0


def test_the_cache_is_bounded_and_forgets_the_least_recently_used() -> None:
    cache = StatsCache(capacity=2)
    for cid in ("a", "b"):
        cache.finish(cache.begin(cid), (_stats(cid), 1))
    assert cache.lookup("a", after=None) is not None  # a is now the most recent
    cache.finish(cache.begin("c"), (_stats("c"), 1))
    assert len(cache) == 2 and cache.lookup("b", after=None) is None and cache.lookup("a", after=None) is not None
    none = StatsCache(capacity=0)
    none.finish(none.begin("a"), (_stats("a"), 1))
    assert len(none) == 0


def test_attributes_past_the_bound_are_not_followed() -> None:
    stats = StatsAccumulator(max_attributes=2)
    stats.add([], {"a": 1, "b": 2})
    stats.add([], {"c": 3, "a": 4})
    assert list(stats.attributes()) == ["a", "b"] and stats.attributes_truncated
    stats.add(["x", "y", "z"], {})
    assert stats.tags(most=2) == {"x": 1, "y": 1} and stats.distinct_tags == 3


# --- tags held, numbers past the float range, one computation at a time ---------------------------------------------


def test_distinct_tags_past_the_bound_are_not_held_and_the_answer_says_partial() -> None:
    stats = StatsAccumulator(max_distinct_tags=3)
    for n in range(1000):  # every item a tag of its own, and one tag they all share
        stats.add([f"t{n}", "common"], {})
    assert stats.distinct_tags == 3, "what is held stays at the bound, not one per item"
    assert stats.tags_partial
    assert stats.tags()["common"] == 1000, "a tag seen before the bound keeps being counted"
    within = StatsAccumulator(max_distinct_tags=3)
    within.add(["a", "b", "c"], {})
    within.add(["a"], {})
    assert not within.tags_partial and within.tags() == {"a": 2, "b": 1, "c": 1}


def test_three_items_of_1e308_summarize_to_finite_figures_that_json_can_carry() -> None:
    summary = summarize([1e308, 1e308, 1e308])  # their sum, 3e308, is past the float range
    assert summary.model_dump(exclude={"histogram"}) == {
        "count": 3, "min": 1e308, "max": 1e308, "mean": 1e308, "p50": 1e308, "p90": 1e308, "p99": 1e308
    }  # fmt: skip
    assert summary.histogram.model_dump() == {"edges": [1e308, 1e308], "counts": [3]}
    spread = summarize([-1.7e308, 1e308, 1.7e308])  # the range itself (3.4e308) is past it
    assert math.isclose(spread.mean, 1e308 / 3) and spread.p50 == 1e308
    assert all(math.isfinite(x) for x in [spread.p90, spread.p99, *spread.histogram.edges])
    assert spread.histogram.edges == sorted(spread.histogram.edges) and sum(spread.histogram.counts) == 3
    assert spread.p90 == pytest.approx(1e308 + 0.8 * 0.7e308) and spread.p90 <= spread.p99 <= 1.7e308
    assert "Infinity" not in summary.model_dump_json() + spread.model_dump_json()


def test_a_number_past_the_float_range_is_left_out_not_an_error() -> None:
    stats = StatsAccumulator()
    # jsonb keeps any numeric; orjson refuses to read these, the standard library reads an int and inf.
    stats.add_rows([{"tags": [], "attributes": '{"big": 1' + "0" * 400 + ', "huge": 1e400, "n": 2}'}])
    assert list(stats.attributes()) == ["n"]


async def _settle() -> None:
    """Let every task that can run, run (its computation included): a few turns of the loop."""
    for _ in range(10):
        await asyncio.sleep(0)


async def test_concurrent_misses_of_one_collection_compute_once_and_share_the_figures() -> None:
    cache = StatsCache(capacity=8)
    computed = 0
    release = asyncio.Event()

    async def compute() -> tuple[CollectionStats, int]:
        nonlocal computed
        computed += 1
        await release.wait()
        return _stats(), 100

    callers = [asyncio.create_task(cache.single_flight("c1", 50, compute)) for _ in range(20)]
    await _settle()
    assert computed == 1 and cache.flights == 1
    release.set()
    answers = await asyncio.gather(*callers)
    assert computed == 1 and cache.flights == 0
    assert [joined for _, joined in answers].count(False) == 1, "one computed, nineteen joined"
    assert all(stats == _stats() for stats, _ in answers)
    assert cache.lookup("c1", after=None) == _stats(), "and stored"


async def test_a_computation_begun_before_a_change_is_not_joined_and_a_newer_write_computes_again() -> None:
    cache = StatsCache(capacity=8)
    calls: list[asyncio.Event] = []

    async def compute() -> tuple[CollectionStats, int]:
        calls.append(gate := asyncio.Event())
        n = len(calls)
        await gate.wait()
        return _stats(items=n), 100 * n

    first = asyncio.create_task(cache.single_flight("c1", None, compute))
    await _settle()
    cache.invalidate("c1")  # an item changed: the figures under way may predate it
    second = asyncio.create_task(cache.single_flight("c1", None, compute))
    await _settle()
    assert len(calls) == 2, "a new version: its own computation"
    # A caller whose own write (position 150) is past the first computation's snapshot (100) does not take it.
    third = asyncio.create_task(cache.single_flight("c1", 150, compute))
    await _settle()
    for gate in list(calls):
        gate.set()
    assert (await first)[0].items == 1 and (await second)[0].items == 2
    stats, joined = await third
    assert joined and stats.items == 2, "joined the computation of the current version, whose snapshot holds 200"


async def test_a_caller_that_goes_away_leaves_the_computation_to_the_others_and_a_failure_reaches_all() -> None:
    cache = StatsCache(capacity=8)
    gate = asyncio.Event()

    async def compute() -> tuple[CollectionStats, int]:
        await gate.wait()
        return _stats(), 1

    leader = asyncio.create_task(cache.single_flight("c1", None, compute))
    await _settle()
    follower = asyncio.create_task(cache.single_flight("c1", None, compute))
    await _settle()
    leader.cancel()
    gate.set()
    assert (await follower) == (_stats(), True)

    async def broken() -> tuple[CollectionStats, int]:
        await asyncio.sleep(0)
        raise RuntimeError("the database went away")

    cache.invalidate("c1")
    failing = [asyncio.create_task(cache.single_flight("c2", None, broken)) for _ in range(3)]
    results = await asyncio.gather(*failing, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results) and cache.flights == 0
    assert cache.lookup("c2", after=None) is None
