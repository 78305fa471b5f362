"""Read strata's events from Kafka as an external system would, and check each one against its JSON Schema.

Standalone on purpose: it imports nothing from strata, only aiokafka and
jsonschema (``pip install aiokafka jsonschema rfc3339-validator``), and reads
the published schema files (``schemas/events/json/``). It does what
docs/events.md asks of a consumer:

- its own consumer group, starting from the earliest offset when new;
- every event topic by pattern (dead-letter topics left out), or the topics given;
- each event validated against the JSON Schema of its type (formats checked);
- duplicates (same ``id``) skipped, unknown ``data`` fields tolerated;
- offsets committed after the events are processed, never before.

It prints one JSON line per new valid event on stdout, one per invalid message
on stderr, and a summary on stderr; it stops after ``--max-messages`` messages
or ``--timeout-s`` seconds, whichever comes first, and exits 0.

Example (the bootstrap address is the ``kafka`` row of ``strata status``; the principal and its password come
from ``strata kafka-user add my-reader --read 'strata.*'``, and its groups are named ``<its name>.<anything>``)::

    KAFKA_PASSWORD=... python examples/consume_events.py --bootstrap 127.0.0.1:9092 \
        --username my-reader --group my-reader.audit --max-messages 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import best_match

EVENT_TOPICS = r"^strata\.(?!dlq\.).*\.v[0-9]+$"
DEFAULT_SCHEMAS = Path(__file__).resolve().parent.parent / "schemas" / "events" / "json"
SEEN_IDS_KEPT = 100_000  # dedupe window: enough for a demo; a real consumer keeps ids with its effects


class InvalidEvent(ValueError):
    """A message that is not a valid strata event."""


class SchemaBook:
    """The published JSON Schemas, found by ``$id`` (an event's ``dataschema``) or by file name (``<type>.json``)."""

    def __init__(self, directory: Path) -> None:
        self._by_name: dict[str, Draft202012Validator] = {}
        self._by_id: dict[str, Draft202012Validator] = {}
        for path in sorted(directory.glob("*.json")):
            schema = json.loads(path.read_text(encoding="utf-8"))
            Draft202012Validator.check_schema(schema)
            validator = Draft202012Validator(schema, format_checker=FormatChecker())
            self._by_name[path.name] = validator
            if isinstance(schema.get("$id"), str):
                self._by_id[schema["$id"]] = validator
        if not self._by_name:
            raise SystemExit(f"consume_events: no JSON Schema files in {directory}")

    def __len__(self) -> int:
        return len(self._by_name)

    def validate(self, raw: bytes | None) -> dict[str, Any]:
        """The event in ``raw``, parsed; ``InvalidEvent`` if it is not JSON or does not match its type's schema."""
        if raw is None:
            raise InvalidEvent("empty message (no value)")
        try:
            event = json.loads(raw)
        except ValueError as exc:
            raise InvalidEvent(f"not JSON: {exc}") from exc
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise InvalidEvent("not a CloudEvent: no string attribute 'type'")
        validator = self._by_id.get(str(event.get("dataschema"))) or self._by_name.get(f"{event['type']}.json")
        if validator is None:
            raise InvalidEvent(f"no schema for event type {event['type']!r}")
        error = best_match(validator.iter_errors(event))
        if error is not None:
            where = error.json_path if error.absolute_path else "the event"
            raise InvalidEvent(f"{event['type']} does not match its schema: {error.message} (at {where})")
        return event


@dataclass
class Tally:
    events: int = 0
    duplicates: int = 0
    invalid: int = 0
    seen: OrderedDict[str, None] = field(default_factory=OrderedDict)

    @property
    def messages(self) -> int:
        return self.events + self.duplicates + self.invalid

    def first_time(self, event_id: str) -> bool:
        if event_id in self.seen:
            self.seen.move_to_end(event_id)
            return False
        self.seen[event_id] = None
        if len(self.seen) > SEEN_IDS_KEPT:
            self.seen.popitem(last=False)
        return True


def handle(record: Any, book: SchemaBook, tally: Tally) -> None:
    """Process one Kafka record: validate, dedupe, print. Never raises for a bad message."""
    try:
        event = book.validate(record.value)
    except InvalidEvent as exc:
        tally.invalid += 1
        print(
            json.dumps(
                {"invalid": str(exc), "topic": record.topic, "partition": record.partition, "offset": record.offset}
            ),
            file=sys.stderr,
        )
        return
    if not tally.first_time(event["id"]):
        tally.duplicates += 1
        return
    tally.events += 1
    print(
        json.dumps(
            {
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "key": record.key.decode("utf-8", errors="replace") if record.key is not None else None,
                "id": event["id"],
                "type": event["type"],
                "subject": event["subject"],
                "time": event["time"],
                "actor": event.get("actor"),
                "data": event["data"],
            },
            sort_keys=True,
        ),
        flush=True,
    )


async def consume(args: argparse.Namespace, book: SchemaBook) -> Tally:
    consumer = AIOKafkaConsumer(
        **connection(args),
        group_id=args.group,
        enable_auto_commit=False,  # commit after processing, below
        auto_offset_reset="earliest",  # a new group reads the retained history
        metadata_max_age_ms=5_000,  # notice new topics matching the pattern soon
    )
    if args.topic:
        consumer.subscribe(topics=args.topic)
    else:
        consumer.subscribe(pattern=EVENT_TOPICS)
    tally = Tally()
    deadline = time.monotonic() + args.timeout_s
    try:
        await consumer.start()
        while time.monotonic() < deadline and (args.max_messages is None or tally.messages < args.max_messages):
            wait_ms = max(1, min(1000, int((deadline - time.monotonic()) * 1000)))
            left = None if args.max_messages is None else args.max_messages - tally.messages
            batches = await consumer.getmany(timeout_ms=wait_ms, max_records=left)
            processed: dict[TopicPartition, int] = {}
            for tp, records in batches.items():
                for record in records:
                    handle(record, book, tally)
                    processed[tp] = record.offset + 1
            if processed:
                await consumer.commit(processed)  # only what has been processed
    finally:
        await consumer.stop()
    return tally


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers (host:port[,...]).")
    parser.add_argument("--group", default="strata-example-consumer", help="Consumer group id: use one of your own.")
    parser.add_argument(
        "--schemas", type=Path, default=DEFAULT_SCHEMAS, help="Folder of the JSON Schema files (<type>.json)."
    )
    parser.add_argument(
        "--topic",
        action="append",
        default=[],
        help=f"Topic to read (repeatable). Default: every event topic, by the pattern {EVENT_TOPICS}",
    )
    parser.add_argument(
        "--username",
        default=os.environ.get("KAFKA_USERNAME"),
        help="SASL username (a principal from `strata kafka-user add`); env KAFKA_USERNAME.",
    )
    parser.add_argument(
        "--security-protocol",
        choices=["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"],
        default=None,
        help="Default: SASL_PLAINTEXT with --username (strata's embedded broker), else PLAINTEXT.",
    )
    parser.add_argument("--sasl-mechanism", default="SCRAM-SHA-512", help="SASL mechanism (SCRAM-SHA-512).")
    parser.add_argument("--ca-file", type=Path, default=None, help="CA bundle that verifies the brokers (SSL).")
    parser.add_argument("--max-messages", type=int, default=None, help="Stop after this many messages.")
    parser.add_argument("--timeout-s", type=float, default=30.0, help="Stop after this many seconds.")
    args = parser.parse_args(argv)
    if args.max_messages is not None and args.max_messages < 1:
        parser.error("--max-messages must be at least 1")
    if args.timeout_s <= 0:
        parser.error("--timeout-s must be positive")
    args.password = os.environ.get("KAFKA_PASSWORD")  # never on the command line, where `ps` shows it
    if args.security_protocol is None:
        args.security_protocol = "SASL_PLAINTEXT" if args.username else "PLAINTEXT"
    if args.security_protocol.startswith("SASL_") and not (args.username and args.password):
        parser.error(f"{args.security_protocol} needs --username (or KAFKA_USERNAME) and KAFKA_PASSWORD in the env")
    return args


def connection(args: argparse.Namespace) -> dict[str, Any]:
    """aiokafka's connection options from the arguments: SASL credentials and TLS when asked for."""
    options: dict[str, Any] = {"bootstrap_servers": args.bootstrap, "security_protocol": args.security_protocol}
    if args.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl.create_default_context(cafile=str(args.ca_file) if args.ca_file else None)
    if args.security_protocol.startswith("SASL_"):
        options.update(
            sasl_mechanism=args.sasl_mechanism, sasl_plain_username=args.username, sasl_plain_password=args.password
        )
    return options


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    book = SchemaBook(args.schemas)
    if "date-time" not in FormatChecker.checkers:
        print("consume_events: install rfc3339-validator, or 'time' is not checked", file=sys.stderr)
    try:
        tally = asyncio.run(consume(args, book))
    except KafkaError as exc:
        print(f"consume_events: Kafka at {args.bootstrap}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    summary = {"events": tally.events, "duplicates": tally.duplicates, "invalid": tally.invalid, "schemas": len(book)}
    print(json.dumps(summary), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
