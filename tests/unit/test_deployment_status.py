"""`strata status`'s deployment rows: the dashboard's JSON parsed, the CPU and the autoscaler's record joined, the
table rendered. The fake dashboard answer is checked against Serve's own schema, so it keeps the real shape."""

from __future__ import annotations

import json
from typing import Any

from ray.serve.schema import ApplicationDetails

from strata.cluster._deployments import (
    deployment_rows,
    local_replica_pids,
    parse_autoscaler_records,
    render_deployments,
    sample_cpu,
)

HERE = frozenset({"127.0.0.1", "10.0.0.5"})


def _replica(replica_id: str, state: str, pid: int, node_ip: str = "127.0.0.1") -> dict[str, Any]:
    return {
        "node_id": "node-" + node_ip,
        "node_ip": node_ip,
        "actor_id": "actor-" + replica_id,
        "actor_name": "SERVE_REPLICA::" + replica_id,
        "worker_id": "worker-" + replica_id,
        "log_file_path": None,
        "replica_id": replica_id,
        "state": state,
        "pid": pid,
        "start_time_s": 1_700_000_000.0,
    }


def _deployment(name: str, config: dict[str, Any], target: int, replicas: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "status": "UPSCALING" if target > sum(r["state"] == "RUNNING" for r in replicas) else "HEALTHY",
        "status_trigger": "CONFIG_UPDATE_COMPLETED",
        "message": "",
        "deployment_config": {"name": name, **config},
        "target_num_replicas": target,
        "required_resources": {"CPU": 0},
        "replicas": replicas,
    }


def _app(name: str, deployments: list[dict[str, Any]]) -> dict[str, Any]:
    app = {
        "name": name,
        "route_prefix": None,
        "docs_path": None,
        "status": "RUNNING",
        "message": "",
        "last_deployed_time_s": 1_700_000_000.0,
        "deployed_app_config": None,
        "source": "declarative",
        "external_scaler_enabled": False,
        "deployments": {d["name"]: d for d in deployments},
    }
    # What the dashboard answers is Serve's ApplicationDetails as JSON: the fake must be one.
    return dict(ApplicationDetails.model_validate(app).model_dump(mode="json", exclude_unset=True))


DETAILS = {
    "data": _app(
        "data",
        [
            _deployment(
                "DataService",
                {"autoscaling_config": {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 16}},
                2,
                [_replica("ds1", "RUNNING", 101), _replica("ds2", "STARTING", 102)],
            ),
            _deployment(
                "DataProcessing",
                {"autoscaling_config": {"min_replicas": 1, "max_replicas": 3}},
                1,
                [_replica("dp1", "RUNNING", 201), _replica("dp2", "STOPPING", 202, node_ip="10.0.0.9")],
            ),
        ],
    ),
    "audit": _app("audit", [_deployment("AuditService", {"num_replicas": 1}, 1, [_replica("a1", "RUNNING", 301)])]),
}

RECORDS = {
    ("data", "DataService"): {
        "at": 1_700_000_090.0,
        "from": 1,
        "to": 2,
        "reason": "ongoing above target",
        "metric": "ongoing_requests",
        "value": 20.5,
        "replicas": 1,
    },
    ("data", "DataProcessing"): {
        "at": 1_700_000_095.0,
        "from": 1,
        "to": 1,
        "reason": "hold: within the band",
        "metric": "cpu_utilization",
        "value": 0.61,
        "replicas": 1,
    },
}


def _rows() -> list[dict[str, Any]]:
    cpu = {101: 12.5, 102: 3.0, 201: 95.0, 202: 50.0}  # 202 is a pid on another node: never ours to read
    return deployment_rows(DETAILS, cpu=cpu, records=RECORDS, local_ips=HERE)


def test_one_row_per_deployment_with_replica_counts_bounds_and_target() -> None:
    rows = {(r["app"], r["deployment"]): r for r in _rows()}
    assert list(rows) == [("data", "DataService"), ("data", "DataProcessing"), ("audit", "AuditService")]
    service = rows[("data", "DataService")]
    assert (service["running"], service["starting"], service["stopping"]) == (1, 1, 0)
    assert (service["min_replicas"], service["max_replicas"], service["target_replicas"]) == (1, 2, 2)
    assert service["status"] == "UPSCALING"
    processing = rows[("data", "DataProcessing")]
    assert (processing["running"], processing["starting"], processing["stopping"]) == (1, 0, 1)
    assert processing["replica_states"] == {"RUNNING": 1, "STOPPING": 1}
    audit = rows[("audit", "AuditService")]
    assert (audit["min_replicas"], audit["max_replicas"]) == (1, 1)  # fixed size: num_replicas both ways


def test_cpu_is_summed_over_the_replicas_on_this_machine_and_kept_per_replica() -> None:
    rows = {r["deployment"]: r for r in _rows()}
    assert rows["DataService"]["cpu_percent"] == 15.5
    per_replica = {r["replica_id"]: r["cpu_percent"] for r in rows["DataProcessing"]["replicas"]}
    assert per_replica == {"dp1": 95.0, "dp2": None}  # dp2 runs on 10.0.0.9
    assert rows["DataProcessing"]["cpu_percent"] == 95.0
    assert rows["AuditService"]["cpu_percent"] is None  # not sampled
    assert sorted(local_replica_pids(DETAILS, HERE)) == [101, 102, 201, 301]


def test_the_autoscaler_s_record_is_joined_and_missing_ones_are_none() -> None:
    rows = {r["deployment"]: r for r in _rows()}
    assert rows["DataService"]["autoscaler"] == RECORDS[("data", "DataService")]
    assert rows["AuditService"]["autoscaler"] is None
    json.dumps(_rows())  # `strata status --json` prints them as they are


def test_the_table_shows_every_column_and_a_dash_for_what_it_cannot_see() -> None:
    lines = render_deployments(_rows(), now=1_700_000_100.0)
    header = "APP DEPLOYMENT STATUS RUN START STOP TARGET MIN..MAX CPU% ONGOING LAST DECISION"
    assert lines[0].split() == header.split()
    service, processing, audit = lines[1:]
    assert service.split()[:10] == ["data", "DataService", "UPSCALING", "1", "1", "0", "2", "1..2", "15.5", "20.5"]
    assert service.endswith("1->2 10s ago (ongoing_requests=20.50): ongoing above target")
    assert processing.split()[:10] == ["data", "DataProcessing", "HEALTHY", "1", "0", "1", "1", "1..3", "95.0", "-"]
    assert processing.endswith("1->1 5s ago (cpu_utilization=0.61): hold: within the band")
    assert audit.split()[7:] == ["1..1", "-", "-", "-"]


def test_the_kv_entries_become_records_and_malformed_ones_are_skipped() -> None:
    raw = {
        b"data/DataProcessing": json.dumps(RECORDS[("data", "DataProcessing")]).encode(),
        b"no-slash": b"{}",
        b"data/Broken": b"not json",
        b"data/List": b"[1, 2]",
    }
    assert parse_autoscaler_records(raw) == {("data", "DataProcessing"): RECORDS[("data", "DataProcessing")]}


def test_cpu_sampling_reads_live_processes_over_the_window_and_leaves_out_gone_ones() -> None:
    import os

    waited: list[float] = []
    sampled = sample_cpu([os.getpid(), 2**22 + 12345], window_s=0.2, sleep=waited.append)
    assert waited == [0.2]
    assert list(sampled) == [os.getpid()] and sampled[os.getpid()] >= 0.0
    assert sample_cpu([], sleep=waited.append) == {} and waited == [0.2]  # nothing to sample: no wait


def test_status_reads_the_namespace_and_keys_the_policies_write() -> None:
    from strata.cluster._deployments import AUTOSCALER_NAMESPACE, parse_autoscaler_records
    from strata.serve_apps._autoscaling import DECISIONS_NAMESPACE, decision_key

    assert AUTOSCALER_NAMESPACE == DECISIONS_NAMESPACE
    records = parse_autoscaler_records({decision_key("data", "DataProcessing"): b'{"to": 2}'})
    assert records == {("data", "DataProcessing"): {"to": 2}}


def test_the_last_decision_names_the_last_change_and_why() -> None:
    from strata.cluster._deployments import _decision

    record = {
        "at": 100.0, "from": 2, "to": 2, "reason": "within the band", "metric": "cpu_utilization", "value": 0.6,
        "last_change": {"at": 40.0, "from": 1, "to": 2, "reason": "mean CPU 73% above the target 70%"},
    }  # fmt: skip
    assert _decision(record, now=103.0) == (
        "2->2 3s ago (cpu_utilization=0.60): within the band;"
        " last change 1->2 63s ago: mean CPU 73% above the target 70%"
    )
