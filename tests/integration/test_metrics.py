"""strata's Prometheus metrics, scraped from the local Ray head's metrics agent like Prometheus does."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from strata.cluster._status import status_metrics_url
from strata.contracts import DataClient
from strata.schemas import CollectionCreate, DataCaller, ItemCreate
from tests.conftest import System

pytestmark = pytest.mark.integration

WANTED = {
    "ray_strata_outbox_published_total": {"service"},
    "ray_strata_outbox_backlog_rows": {"service", "shard"},
    "ray_strata_db_calls_in_flight": {"pool"},
    "ray_strata_consumer_lag_messages": {"group", "topic"},
}


def _scrape(url: str) -> dict[str, list[dict[str, str]]]:
    samples: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(httpx.get(url, timeout=10).text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(dict(sample.labels))
    return samples


async def test_outbox_pool_and_consumer_metrics_are_exported(system: System, ray_driver: None) -> None:
    url = status_metrics_url(system.settings)
    assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
    # Some work that every metric sees: an item (outbox, pool) whose event the audit group consumes.
    caller, data = DataCaller(user_id=str(uuid.uuid4())), DataClient()
    collection = (await data.create_collection(caller, CollectionCreate(name="metrics"))).collection
    await data.create_item(caller, collection.id, ItemCreate(title="n", attributes={"n": 1}))
    deadline = time.monotonic() + 90  # Ray's agent exports what workers record every few seconds
    missing: list[str] = ["not scraped yet"]
    samples: dict[str, list[dict[str, str]]] = {}
    while missing and time.monotonic() < deadline:
        samples = _scrape(url)
        missing = _missing(samples)
        if missing:
            await asyncio.sleep(3)
    assert not missing, f"not exported within 90 s: {missing}"


def _missing(samples: dict[str, list[dict[str, str]]]) -> list[str]:
    """What the scrape lacks: each wanted metric with its labels, the data service's outbox, the audit group's lag.

    Each group member records its lag on its own schedule, so the audit group's gauge may come a scrape later than
    another group's: wait for all of it, then nothing is judged on a half-exported set.
    """
    missing = [
        name for name, keys in WANTED.items() if not any(keys <= set(labels) for labels in samples.get(name, []))
    ]
    services = {labels.get("service") for labels in samples.get("ray_strata_outbox_published_total", [])}
    if "data" not in services:
        missing.append("ray_strata_outbox_published_total{service=data}")
    groups = {labels.get("group") for labels in samples.get("ray_strata_consumer_lag_messages", [])}
    if "audit" not in groups:
        missing.append(f"ray_strata_consumer_lag_messages{{group=audit}} (groups seen: {sorted(map(str, groups))})")
    return missing
