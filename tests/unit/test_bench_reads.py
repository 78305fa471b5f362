"""The read scenarios' pieces that need no server: their requests, the Lua script's environment, the order of the
standby's states, strata's read counts and the share of them on the standby, and how the results show them."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest

from benchmarks._reads import (
    ABBA,
    DataReads,
    SeededUser,
    read_requests,
    reads_by_target,
    requests_env,
    rounds,
    samples,
    standby_share,
)
from benchmarks._report import plot_series, reads_section, results_markdown, scenario_label
from benchmarks._wrk import SCRIPTS_DIR

USERS = [
    SeededUser("token-a", "c-a", ("a1", "a2", "a3")),
    SeededUser("token-b", "c-b", ("b1", "b2")),
]

# As Ray's metrics agent exports strata's counters and gauges: Ray's own labels beside strata's.
METRICS = """\
# HELP ray_strata_db_reads_total Read-only units of work, by where they ran.
# TYPE ray_strata_db_reads_total counter
ray_strata_db_reads_total{Component="core_worker",WorkerId="w1",service="data",target="primary"} 10.0
ray_strata_db_reads_total{Component="core_worker",WorkerId="w2",service="data",target="primary"} 5.0
ray_strata_db_reads_total{Component="core_worker",WorkerId="w1",service="data",target="127.0.0.1:5433"} 100.0
ray_strata_db_reads_total{Component="core_worker",WorkerId="w3",service="users",target="127.0.0.1:5433"} 7.0
# HELP ray_strata_db_replica_in_rotation 1 when a standby takes reads, else 0.
# TYPE ray_strata_db_replica_in_rotation gauge
ray_strata_db_replica_in_rotation{WorkerId="w1",service="data",standby="127.0.0.1:5433"} 1.0
ray_strata_db_replica_in_rotation{WorkerId="w2",service="data",standby="127.0.0.1:5433"} 0.0
"""


def test_item_get_loads_every_item_by_its_owner_interleaved_across_users() -> None:
    assert read_requests("item-get", USERS) == [
        (0, "/v1/collections/c-a/items/a1"),
        (1, "/v1/collections/c-b/items/b1"),
        (0, "/v1/collections/c-a/items/a2"),
        (1, "/v1/collections/c-b/items/b2"),
        (0, "/v1/collections/c-a/items/a3"),
    ]


def test_item_list_loads_a_full_page_of_each_user_s_own_collection() -> None:
    assert read_requests("item-list", USERS) == [
        (0, "/v1/collections/c-a/items?limit=50"),
        (1, "/v1/collections/c-b/items?limit=50"),
    ]
    with pytest.raises(ValueError, match="not a read scenario"):
        read_requests("me", USERS)


def test_the_script_s_environment_carries_each_token_once_and_numbers_them_from_one() -> None:
    env = requests_env(["token-a", "token-b"], read_requests("item-list", USERS))
    assert env == {
        "BENCH_TOKENS": "token-a,token-b",
        "BENCH_REQUESTS": "1 /v1/collections/c-a/items?limit=50,2 /v1/collections/c-b/items?limit=50",
    }
    # What scripts/paths.lua matches each entry with, and splits the variables on.
    lua = (SCRIPTS_DIR / "paths.lua").read_text()
    assert '"^(%d+) (%S+)$"' in lua and '"[^,]+"' in lua
    tokens = env["BENCH_TOKENS"].split(",")
    for entry in env["BENCH_REQUESTS"].split(","):
        match = re.fullmatch(r"(\d+) (\S+)", entry)
        assert match is not None and 1 <= int(match[1]) <= len(tokens), entry


def test_requests_past_the_size_limit_are_left_out_keeping_the_first_ones() -> None:
    requests = read_requests("item-get", USERS)
    one = len("1 /v1/collections/c-a/items/a1")
    env = requests_env(["token-a", "token-b"], requests, max_bytes=3 * one + 2)
    assert env["BENCH_REQUESTS"].split(",") == [f"{n + 1} {path}" for n, path in requests[:3]]
    with pytest.raises(ValueError, match="no request fits"):
        requests_env(["token-a"], requests, max_bytes=5)


@pytest.mark.parametrize(
    ("tokens", "requests", "message"),
    [
        (["t"], [(1, "/x")], "names token 1, of 1"),
        (["t"], [(0, "/x,y")], "neither commas nor spaces"),
        (["t"], [(0, "/x y")], "neither commas nor spaces"),
    ],
)
def test_a_request_the_script_could_not_read_is_refused(
    tokens: list[str], requests: list[tuple[int, str]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        requests_env(tokens, requests)


def test_the_standby_states_come_in_abba_order_each_twice_at_the_same_mean_position() -> None:
    numbered = rounds()
    assert numbered == [("on", 1), ("off", 1), ("off", 2), ("on", 2)]
    positions: dict[str, list[int]] = defaultdict(list)
    for position, state in enumerate(ABBA):
        positions[state].append(position)
    assert set(positions) == {"on", "off"}
    means = {state: sum(at) / len(at) for state, at in positions.items()}
    assert means["on"] == means["off"]  # a linear drift over the run weighs on both alike


def test_reads_are_summed_over_the_data_service_s_replicas_by_where_they_ran() -> None:
    assert reads_by_target(METRICS) == {"primary": 15.0, "127.0.0.1:5433": 100.0}
    rotation = [value for _, value in samples(METRICS, "ray_strata_db_replica_in_rotation", service="data")]
    assert rotation == [1.0, 0.0]
    assert samples(METRICS, "ray_strata_db_replica_in_rotation", service="audit") == []


@pytest.mark.parametrize(
    ("before", "after", "share"),
    [
        ({"primary": 15, "s:1": 100}, {"primary": 16, "s:1": 199}, (100, 99.0)),
        ({"primary": 15, "s:1": 100}, {"primary": 115, "s:1": 100}, (100, 0.0)),  # the standby off
        ({}, {"primary": 1, "s:1": 1, "s:2": 2}, (4, 75.0)),  # every standby counts, new ones too
        ({"primary": 15}, {"primary": 15}, (0, None)),  # no read: no share
    ],
)
def test_the_share_on_the_standby_is_of_the_reads_between_two_counts(
    before: dict[str, float], after: dict[str, float], share: tuple[int, float | None]
) -> None:
    assert standby_share(before, after) == share


def test_the_count_is_awaited_until_it_holds_every_read_sent() -> None:
    exports = iter([METRICS, METRICS, METRICS.replace("} 100.0", "} 140.0"), METRICS.replace("} 100.0", "} 160.0")])
    lines: list[str] = []
    reads = DataReads(lambda: next(exports), lines.append, poll_s=0)
    assert reads.expected == 115
    reads.sent(40)
    counts = reads.settle()
    assert counts["127.0.0.1:5433"] == 140 and reads.last == counts
    assert lines == []


def test_reads_counted_past_the_mark_are_taken_into_it_so_the_slack_does_not_grow() -> None:
    # wrk counted 10 reads; strata served 12 (two were in flight when wrk stopped).
    exports = iter([METRICS, METRICS.replace("} 100.0", "} 112.0")])
    reads = DataReads(lambda: next(exports), lambda _: None, poll_s=0)
    reads.sent(10)
    reads.settle()
    assert reads.expected == 127


def test_a_count_that_never_arrives_is_awaited_no_longer_than_the_patience_and_said() -> None:
    lines: list[str] = []
    reads = DataReads(lambda: METRICS, lines.append, patience_s=0, poll_s=0)
    reads.sent(10)
    assert reads.settle() == {"primary": 15.0, "127.0.0.1:5433": 100.0}
    assert lines and "counted 115 reads of the 125 sent" in lines[0]


def _read_point(standby: str, round_number: int, rps: float, share: float | None) -> dict[str, object]:
    return {
        "target": "strata-haproxy",
        "scenario": "item-get",
        "connections": 8,
        "standby": standby,
        "round": round_number,
        "rps": rps,
        "latency_ms": {"p50": 5.0, "p99": rps / 100},
        "errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0, "http": 0},
        "statuses": {},
        "error_count": 0,
        "cpu_percent": 99.0,
        "wrk_cpu_percent": 5.0,
        "reads_counted": 1000,
        "on_standby_percent": share,
    }


def test_read_rows_say_the_standby_s_state_and_pair_its_two_runs() -> None:
    points = [
        _read_point("on", 1, 900, 99.5),
        _read_point("off", 1, 1000, 0.0),
        _read_point("off", 2, 1100, 0.0),
        _read_point("on", 2, 1000, 99.9),
    ]
    assert scenario_label(points[0]) == "item-get (standby on)"
    assert scenario_label(points[0], with_round=True) == "item-get (standby on, run 1)"
    assert scenario_label({"scenario": "me"}, with_round=True) == "me"
    run = {
        "meta": {
            "date": "2026-01-01 00:00 UTC",
            "machine": "test",
            "versions": {"python": "3.11"},
            "duration_s": 10,
            "warmup_s": 3,
            "threads": 2,
            "timeout_s": 5,
            "users": 8,
            "scenarios": ["item-get"],
            "targets": {"strata-haproxy": "strata", "peer-fastapi": "monolith"},
            "not_run": {"peer-fastapi": {"item-get": "the peers serve `ping` and `me` only"}},
        },
        "points": points,
        "failures": {},
    }
    section = reads_section(run)
    assert "| item-get | strata-haproxy | 8 | on | 900 / 1,000 | 9.0 / 10.0 | 2,000 | 99.5 % / 99.9 % |" in section
    assert "| item-get | strata-haproxy | 8 | off | 1,000 / 1,100 | 10.0 / 11.0 | 2,000 | 0 % / 0 % |" in section
    text = results_markdown(run)
    rows = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| item-get (")]
    assert rows[:4] == [
        "item-get (standby on, run 1)",
        "item-get (standby on, run 2)",
        "item-get (standby off, run 1)",
        "item-get (standby off, run 2)",
    ]
    assert "- `peer-fastapi`, `item-get`: the peers serve `ping` and `me` only" in text
    series = plot_series(points, ["strata-haproxy"])
    assert series == {
        "strata-haproxy (standby on)": ([8], [950.0], [9.5]),
        "strata-haproxy (standby off)": ([8], [1050.0], [10.5]),
    }
