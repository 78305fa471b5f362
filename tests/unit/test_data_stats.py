"""Collection statistics against the standard library's own figures on the same values."""

from __future__ import annotations

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
