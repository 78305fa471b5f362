"""Collection statistics against the standard library's own figures on the same values."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from strata.serve_apps.data._stats import StatsAccumulator, histogram, percentile, summarize


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
