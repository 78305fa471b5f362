"""The pure logic around KAFKA-20774: reading SCRAM records out of a metadata log dump, predicting when Kafka 4.1 loses
every credential at start, the message a refused admin gets, and the one-off repair listener's configuration."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from strata.actors.kafka import principal_name
from strata.cluster import _kafka
from strata.cluster._components import credentials_refused
from strata.cluster._errors import StartupError
from strata.cluster._kafka import (
    REPAIR_PRINCIPAL,
    EmbeddedKafka,
    RepairListener,
    java_hashmap_order,
    java_string_hash,
    lost_at_start,
    scram_history,
    trailing_removals,
)
from strata.schemas import REGISTRY

# strata's own principals, in the order a fresh data dir's metadata log first names them.
OWN = [principal_name("broker"), principal_name("admin"), *(principal_name(spec.name) for spec in REGISTRY)]


def _dump_line(offset: int, kind: str, data: dict[str, object]) -> str:
    payload = json.dumps({"type": kind, "version": 0, "data": data}, separators=(",", ":"))
    return f"| offset: {offset} CreateTime: 1 keySize: -1 valueSize: 9 sequence: -1 headerKeys: [] payload: {payload}"


def test_java_string_hash_is_javas() -> None:
    # Values of String.hashCode() as Java prints them, taken as unsigned.
    assert java_string_hash("") == 0
    assert java_string_hash("hello") == 99162322
    assert java_string_hash("polygenelubricants") == (-2147483648) & 0xFFFFFFFF  # the famous Integer.MIN_VALUE


def test_hashmap_order_is_by_bucket_then_insertion() -> None:
    # "Aa" and "BB" share a hash (2112), so they share a bucket: insertion order decides.
    assert java_hashmap_order(["BB", "Aa"]) == ["BB", "Aa"]
    assert java_hashmap_order(["Aa", "BB"]) == ["Aa", "BB"]
    # A key put twice keeps its first place.
    assert java_hashmap_order(["Aa", "BB", "Aa"]) == ["Aa", "BB"]


def test_scram_history_keeps_names_and_removals_only() -> None:
    lines = [
        "Dumping /x/00000000000000000000.log",
        _dump_line(1, "FEATURE_LEVEL_RECORD", {"name": "metadata.version", "featureLevel": 27}),
        _dump_line(2, "USER_SCRAM_CREDENTIAL_RECORD", {"name": "strata-admin", "mechanism": 2, "salt": "c2VjcmV0"}),
        _dump_line(3, "USER_SCRAM_CREDENTIAL_RECORD", {"name": "other-mechanism", "mechanism": 1}),
        _dump_line(4, "REMOVE_USER_SCRAM_CREDENTIAL_RECORD", {"name": "analytics", "mechanism": 2}),
        "| offset: 5 payload: {not json",
    ]
    assert scram_history(lines) == [("strata-admin", False), ("analytics", True)]


def test_trailing_removals_are_the_names_whose_last_record_removes() -> None:
    history = [("a", False), ("b", False), ("b", True), ("c", True), ("c", False), ("a", True)]
    assert trailing_removals(history) == ["b", "a"]


def test_removing_analytics_loses_every_credential_and_overwriting_it_does_not() -> None:
    """The reproduction of the issue: `kafka-user add analytics`, `kafka-user remove analytics` with a deletion."""
    added = [(name, False) for name in OWN] + [("analytics", False)]
    assert java_hashmap_order([*OWN, "analytics"])[0] == "analytics"  # the first hash bucket
    assert lost_at_start([*added, ("analytics", True)])
    assert not lost_at_start([*added, ("analytics", False)])  # what `remove` writes now: an upsert
    assert not lost_at_start(added)


def test_a_removal_in_a_later_bucket_is_harmless() -> None:
    added = [(name, False) for name in OWN] + [("billing-reader", False)]
    assert java_hashmap_order([*OWN, "billing-reader"])[0] != "billing-reader"
    assert not lost_at_start([*added, ("billing-reader", True)])


def test_about_one_removed_name_in_sixteen_loses_them_all() -> None:
    names = [f"reader-{n}" for n in range(1600)]
    lost = sum(lost_at_start([(name, False) for name in OWN] + [(name, False), (name, True)]) for name in names)
    assert 60 < lost < 160


def test_a_refused_admin_is_told_why_and_what_repairs_it() -> None:
    lost = [(name, False) for name in OWN] + [("analytics", False), ("analytics", True)]
    message = credentials_refused("127.0.0.1:9", "SaslAuthenticationFailed: no", embedded=True, history=lost)
    assert "KAFKA-20774" in message and "analytics" in message and "`strata kafka-user repair`" in message
    mismatch = credentials_refused("127.0.0.1:9", "SaslAuthenticationFailed: no", embedded=True, history=[])
    assert "do not match" in mismatch and "`strata kafka-user repair`" in mismatch
    unread = credentials_refused("127.0.0.1:9", "SaslAuthenticationFailed: no", embedded=True, history=None)
    assert "`strata kafka-user repair`" in unread
    external = credentials_refused("kafka:9092", "SaslAuthenticationFailed: no", embedded=False, history=None)
    assert "kafka_username" in external and "repair" not in external


def _broker(home: Path) -> EmbeddedKafka:
    return EmbeddedKafka(
        home,
        port=9092,
        controller_port=9093,
        heap="256m",
        cache_dir=home / "cache",
        broker_password="b" * 24,
        admin_password="a" * 24,
    )


def test_the_repair_listener_is_loopback_and_exists_only_in_a_repair_start(tmp_path: Path) -> None:
    broker = _broker(tmp_path)
    broker.home.mkdir(parents=True, exist_ok=True)
    listener = RepairListener(port=40001, password="r" * 32)
    broker._write_properties(listener)
    text = broker.properties_file.read_text()
    assert "REPAIR://127.0.0.1:40001" in text
    assert "listener.name.repair.sasl.enabled.mechanisms=PLAIN" in text
    assert f'user_{REPAIR_PRINCIPAL}="{"r" * 32}"' in text
    assert f"User:{REPAIR_PRINCIPAL}" in text.split("super.users=")[1].splitlines()[0]
    assert broker.properties_file.stat().st_mode & 0o777 == 0o600

    broker._write_properties()
    normal = broker.properties_file.read_text()
    assert "REPAIR" not in normal and REPAIR_PRINCIPAL not in normal and "r" * 32 not in normal


def test_the_repair_password_must_be_a_plain_token(tmp_path: Path) -> None:
    broker = _broker(tmp_path)
    broker.home.mkdir(parents=True, exist_ok=True)
    with pytest.raises(Exception, match="16 or more"):
        broker._write_properties(RepairListener(port=40001, password='x";'))


def _fake_format(
    monkeypatch: pytest.MonkeyPatch, broker: EmbeddedKafka, seen: dict[str, object], returncode: int = 0
) -> None:
    """StorageTool replaced by a fake that records what the real one would see: its argv and its argument file."""
    monkeypatch.setattr(_kafka, "resolve_jars", lambda cache_dir: cache_dir / "jars")
    monkeypatch.setattr(_kafka, "find_java", lambda: Path("/usr/bin/java"))

    def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        args_file = broker.format_args_file
        seen.update(argv=list(command), mode=args_file.stat().st_mode & 0o777, uid=args_file.stat().st_uid)
        seen["arguments"] = args_file.read_text().splitlines()
        if returncode == 0:
            broker.data.mkdir(parents=True, exist_ok=True)
            (broker.data / "meta.properties").write_text("cluster.id=x\n")
        return subprocess.CompletedProcess(command, returncode, "", "failed")

    monkeypatch.setattr(_kafka.subprocess, "run", run)


def test_the_format_step_takes_its_passwords_from_a_private_file_not_argv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = _broker(tmp_path)
    seen: dict[str, object] = {}
    _fake_format(monkeypatch, broker, seen)
    broker.prepare()

    argv = seen["argv"]
    assert isinstance(argv, list)
    assert argv[-1] == f"@{broker.format_args_file}"
    assert not any("b" * 24 in part or "a" * 24 in part or "--add-scram" in part for part in argv)
    # The JVM read them from a file only this user could read, gone once the step ran.
    assert seen["mode"] == 0o600 and seen["uid"] == os.getuid()
    arguments = seen["arguments"]
    assert isinstance(arguments, list) and arguments[:3] == ["kafka.tools.StorageTool", "format", "--standalone"]
    assert f"SCRAM-SHA-512=[name={principal_name('broker')},password={'b' * 24}]" in arguments
    assert f"SCRAM-SHA-512=[name={principal_name('admin')},password={'a' * 24}]" in arguments
    assert not broker.format_args_file.exists()


def test_a_failed_format_removes_its_argument_file_and_names_no_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = _broker(tmp_path)
    seen: dict[str, object] = {}
    _fake_format(monkeypatch, broker, seen, returncode=1)
    with pytest.raises(StartupError, match="formatting the Kafka storage failed"):
        broker.prepare()
    assert seen["mode"] == 0o600
    assert not broker.format_args_file.exists()
