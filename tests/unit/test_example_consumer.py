"""examples/consume_events.py, without Kafka: it finds the committed schemas, accepts strata's events, dedupes."""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import orjson
import pytest

from strata.schemas.events import EVENT_TYPES, ITEM_CREATED, schema_dir
from tests.unit.test_event_schemas import sample_event

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "consume_events.py"


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("consume_events", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def _record(raw: bytes, offset: int = 0) -> SimpleNamespace:
    return SimpleNamespace(topic=ITEM_CREATED.topic, partition=0, offset=offset, key=b"k", value=raw)


def test_it_imports_nothing_from_strata() -> None:
    imported = set()
    for node in ast.walk(ast.parse(SCRIPT.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert not [name for name in imported if name.split(".")[0] == "strata"]
    assert {"aiokafka", "jsonschema"} <= {name.split(".")[0] for name in imported}


def test_its_default_schema_folder_is_the_committed_one(example: ModuleType) -> None:
    args = example.parse_args([])
    assert args.schemas.resolve() == schema_dir().resolve()
    assert len(example.SchemaBook(args.schemas)) == len(EVENT_TYPES)


def test_it_accepts_every_strata_event_and_prints_each_id_once(
    example: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    book, tally = example.SchemaBook(schema_dir()), example.Tally()
    messages = [orjson.dumps(sample_event(event)) for event in EVENT_TYPES.values()]

    for offset, raw in enumerate([*messages, messages[0]]):  # the first one delivered twice
        example.handle(_record(raw, offset), book, tally)

    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["id"] for line in printed] == [json.loads(raw)["id"] for raw in messages]
    assert (tally.events, tally.duplicates, tally.invalid) == (len(messages), 1, 0)


def test_it_counts_invalid_messages_and_goes_on(example: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    book, tally = example.SchemaBook(schema_dir()), example.Tally()
    missing_field = sample_event(ITEM_CREATED)
    del missing_field["data"]["collection_id"]

    for raw in (b"not json", orjson.dumps(missing_field), orjson.dumps({**sample_event(ITEM_CREATED), "x": 1})):
        example.handle(_record(raw), book, tally)
    example.handle(_record(orjson.dumps(sample_event(ITEM_CREATED))), book, tally)

    assert (tally.events, tally.invalid) == (1, 3)
    errors = [json.loads(line)["invalid"] for line in capsys.readouterr().err.splitlines()]
    assert "'collection_id' is a required property" in errors[1]
