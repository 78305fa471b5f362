"""The benchmark's pieces that need no load: reading wrk's output, ranking profiles, the results table."""

from __future__ import annotations

import os

import pytest

from benchmarks._cpu import OTHER, cpu_by_group, group_of
from benchmarks._profile import (
    flame_graph_svg,
    function_name,
    package_of,
    parse_collapsed,
    rank_functions,
    ranking_markdown,
)
from benchmarks._report import results_markdown, target_check
from benchmarks._wrk import WrkError, parse_wrk_output

# Captured from wrk 4.1 running benchmarks/scripts/ping.lua against a server answering 404.
WRK_STDOUT = """\
Running 1s test @ http://127.0.0.1:18778/nope
  2 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.67ms    8.78ms  56.56ms   89.12%
    Req/Sec   747.00    201.11     1.02k    70.00%
  Latency Distribution
     50%    1.89ms
     75%    4.82ms
     90%   18.24ms
     99%   40.26ms
  1494 requests in 1.01s, 758.67KB read
  Non-2xx or 3xx responses: 1494
Requests/sec:   1479.65
Transfer/sec:    751.38KB
BENCH_JSON {"requests":1494,"duration_us":1009699,"bytes":776880,"errors":{"connect":0,"read":0,"write":0,\
"status":1494,"timeout":0},"statuses":{"404":1494},"latency_us":{"min":289,"max":56563,"mean":5665.2,\
"stdev":8781.7,"p50":1890,"p75":4822,"p90":18242,"p99":40260,"p999":55711}}
"""


def test_wrk_result_line_becomes_rate_latency_in_ms_and_errors() -> None:
    result = parse_wrk_output(WRK_STDOUT)
    assert result.requests == 1494
    assert result.duration_s == pytest.approx(1.009699)
    assert result.rps == pytest.approx(1479.65, abs=0.01)  # what wrk itself printed
    assert result.latency_ms["p50"] == pytest.approx(1.89)
    assert result.latency_ms["p99"] == pytest.approx(40.26)
    assert result.latency_ms["max"] == pytest.approx(56.563)
    assert result.statuses == {"404": 1494}
    assert result.errors == {"connect": 0, "read": 0, "write": 0, "timeout": 0, "http": 1494}
    assert result.error_count == 1494


def test_socket_errors_and_responses_that_are_not_2xx_add_up() -> None:
    stdout = WRK_STDOUT.replace('"connect":0,"read":0,"write":0', '"connect":2,"read":3,"write":0').replace(
        '"timeout":0},"statuses":{"404":1494}', '"timeout":4},"statuses":{"302":5,"503":10}'
    )
    result = parse_wrk_output(stdout)
    assert result.errors["http"] == 15  # a redirect is not a success either (wrk's own count skips it)
    assert result.error_count == 2 + 3 + 4 + 15
    assert result.as_dict()["error_count"] == 24


def test_without_status_counts_wrk_s_own_http_error_count_stands_in() -> None:
    stdout = WRK_STDOUT.replace(',"statuses":{"404":1494}', "")
    result = parse_wrk_output(stdout)
    assert result.statuses == {}
    assert result.errors["http"] == 1494


def test_output_without_the_result_line_is_an_error() -> None:
    with pytest.raises(WrkError, match="BENCH_JSON"):
        parse_wrk_output(WRK_STDOUT.split("BENCH_JSON")[0])


def test_collapsed_stacks_rank_functions_by_self_and_inclusive_samples() -> None:
    raw = (
        "run (asyncio/base_events.py:600);handle (gateway/_deployment.py:10);decode (jwt/api_jwt.py:99) 30\n"
        "run (asyncio/base_events.py:600);handle (gateway/_deployment.py:12) 10\n"
        "run (asyncio/base_events.py:600);select (selectors.py:468) 60\n"
        "not a stack line\n"
    )
    stacks = parse_collapsed(raw)
    assert sum(stacks.values()) == 100
    ranking = rank_functions(stacks)
    assert ranking.total == 100
    assert ranking.self_samples[0] == ("select (selectors.py)", 60)
    # handle appears at two lines: one function, 40 inclusive samples, 10 of its own
    assert dict(ranking.inclusive_samples)["handle (_deployment.py)"] == 40
    assert dict(ranking.self_samples)["handle (_deployment.py)"] == 10
    assert dict(ranking.inclusive_samples)["run (base_events.py)"] == 100


def test_function_name_drops_the_line_and_the_directory() -> None:
    assert function_name("me (strata/serve_apps/users/_profiles.py:42)") == "me (_profiles.py)"
    assert function_name("<module> (<string>:1)") == "<module> (<string>)"
    assert function_name("bare") == "bare"


def test_flame_graph_is_svg_with_one_titled_box_per_frame() -> None:
    stacks = parse_collapsed("a (x.py:1);b (x.py:2) 3\na (x.py:1);c (x.py:3) 1\n")
    svg = flame_graph_svg(stacks, "demo <1>")
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<rect") == 3
    assert "b (x.py:2) (3 samples, 75.0%)" in svg
    assert "demo &lt;1&gt;" in svg


def _point(target: str, scenario: str, connections: int, p99: float, errors: int = 0) -> dict[str, object]:
    return {
        "target": target,
        "scenario": scenario,
        "connections": connections,
        "rps": 1234.5,
        "latency_ms": {"p50": 10.0, "p99": p99},
        "errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0, "http": errors},
        "statuses": {"503": errors} if errors else {},
        "error_count": errors,
        "cpu_percent": 97.0,
        "wrk_cpu_percent": 12.0,
    }


def test_results_table_orders_points_and_says_where_the_target_stands() -> None:
    points = [
        _point("peer-fastapi", "me", 64, 80.0),
        _point("strata-haproxy", "me", 64, 250.0, errors=3),
        _point("strata-haproxy", "ping", 8, 5.0),
        {"target": "peer-serve", "scenario": "me", "connections": 64, "error": "did not start"},
    ]
    verdicts = target_check(points)
    assert verdicts == {
        "peer-fastapi": "80 ms (meets p99 < 200 ms, 0 errors)",
        "strata-haproxy": "250 ms (misses p99 < 200 ms, 3 errors)",
    }
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
            "scenarios": ["ping", "me"],
            "targets": {"strata-haproxy": "strata", "peer-fastapi": "monolith", "peer-serve": "serve"},
        },
        "points": points,
        "failures": {"peer-serve": "TargetError: did not start"},
        "target": verdicts,
    }
    text = results_markdown(run)
    rows = [line for line in text.splitlines() if line.startswith("| ping") or line.startswith("| me")]
    assert [row.split("|")[2].strip() for row in rows] == [
        "strata-haproxy",
        "strata-haproxy",
        "peer-fastapi",
        "peer-serve",
    ]
    assert "| me | strata-haproxy | 64 | 1,234 | 10.0 | 250.0 | 3 (HTTP 503: 3) | 97 | 12 |" in text
    assert "failed: did not start" in text
    assert "- `peer-serve`: TargetError: did not start" in text


def test_profile_section_says_how_busy_the_gil_was() -> None:
    ranking = rank_functions(parse_collapsed("run (a.py:1);work (a.py:2) 250\n"))
    text = ranking_markdown("ServeReplica:gateway (pid 1)", ranking, possible_samples=1000)
    assert "250 samples holding the GIL out of 1000 taken" in text
    assert "about 25 % of the time" in text
    assert "| `work (a.py)` | 250 | 100.0% |" in text


@pytest.mark.parametrize(
    ("frame", "package"),
    [
        ("call (/v/lib/python3.11/site-packages/ray/serve/_private/replica.py:12)", "ray.serve"),
        ("decode (/v/lib/python3.11/site-packages/jwt/api_jws.py:5)", "jwt"),
        ("run (/usr/lib/python3.11/asyncio/base_events.py:1)", "stdlib asyncio"),
        ("wait (/usr/lib/python3.11/threading.py:320)", "stdlib threading"),
        ("__call__ (/work/main/serve_apps/gateway/_hygiene.py:3)", "strata serve_apps/gateway"),
        ("replica (/work/main/serve_apps/_replica.py:3)", "strata serve_apps"),
        ("join (<frozen posixpath>:1)", "<frozen posixpath>"),
        ("no file at all", "?"),
    ],
)
def test_a_frame_s_package_comes_from_its_file_path(frame: str, package: str) -> None:
    assert package_of(frame) == package


@pytest.mark.parametrize(
    ("name", "cmdline", "group"),
    [
        ("ray::ServeRepl", "ray::ServeReplica:gateway:Gateway", "gateway replicas"),
        ("ray::ServeRepl", "ray::ServeReplica:users:UsersService", "users replicas"),
        ("ray::ProxyActor", "ray::ProxyActor", "Serve proxy"),
        ("haproxy", "/venv/bin/haproxy -f /data/tls/front.cfg", "TLS front (haproxy)"),
        ("haproxy", "/venv/bin/haproxy -f /tmp/strata-ray-1/haproxy/haproxy.cfg", "Serve HAProxy"),
        ("postgres", "postgres: strata_users strata 127.0.0.1(5432) idle", "PostgreSQL"),
        ("java", "/usr/bin/java -Xmx512m kafka.Kafka server.properties", "Kafka"),
        ("python3", "python -m uvicorn benchmarks.peer.monolith:app --workers=2", "uvicorn"),
        ("raylet", "/venv/ray/raylet --temp_dir=/tmp/strata-ray-1", "Ray core, controller, other actors"),
    ],
)
def test_a_target_s_process_falls_in_a_group(name: str, cmdline: str, group: str) -> None:
    assert group_of(name, cmdline) == group


def test_cpu_shares_count_what_each_group_spent_between_two_snapshots() -> None:
    before = {1: (100.0, 5.0, "gateway replicas"), 2: (100.0, 1.0, "PostgreSQL"), 3: (100.0, 9.0, OTHER)}
    after = {
        1: (100.0, 15.0, "gateway replicas"),  # 10 s of CPU
        2: (100.0, 3.0, "PostgreSQL"),  # 2 s
        3: (200.0, 4.0, OTHER),  # pid 3 was reused by a new process: all its 4 s count
        4: (150.0, 0.001, "Serve proxy"),  # too little to list
    }
    shares = cpu_by_group(before, after, seconds=10.0)
    cores = os.cpu_count() or 1
    assert shares == {
        "gateway replicas": round(10 / (10 * cores) * 100, 1),
        OTHER: round(4 / (10 * cores) * 100, 1),
        "PostgreSQL": round(2 / (10 * cores) * 100, 1),
    }
    assert list(shares) == ["gateway replicas", OTHER, "PostgreSQL"]
