"""The read scenarios, ``item-get`` and ``item-list``, measured with strata's standby on and off in one run.

Set-up, through the target's public API as any client would: each bench user creates one collection and
:data:`ITEMS_PER_USER` items in it (one batch), so that a page of :data:`PAGE` is full, and reads one item and one
page back. Then each request of a scenario is a bearer token and a path:

- ``item-get``: ``GET /v1/collections/{id}/items/{item_id}``, every item of every user, by its owner;
- ``item-list``: ``GET /v1/collections/{id}/items?limit=50``, each user's own collection.

``scripts/paths.lua`` reads them from the environment (:func:`requests_env`) and each wrk thread rotates through them.

Standby on and off is one running system, not two: the ``standby`` lifecycle component is stopped
(``strata.cluster.stop_component``), and strata's routing database skips a standby that does not answer, so reads
go to the primary; it is started again (``start_component``) and, before anything is measured, it must have caught
up with the primary (``pg_stat_replication``) and be back in the data service's read rotation (the gauge
``strata_db_replica_in_rotation``). The states follow :data:`ABBA` (on, off, off, on), so a drift of the machine over
the run (someone else's load, a warming cache) weighs on both alike.

Where the reads ran is strata's own count, ``strata_db_reads_total{service="data", target=...}`` (``primary`` or a
standby's ``host:port``), read from Ray's metrics export. Ray exports what workers record every few seconds, so after
each run, and after each switch of the standby, the count is awaited until it holds every successful read the bench
has sent (:class:`DataReads`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from benchmarks._targets import Endpoint, Log, StrataSystem, TargetError, post_json

READ_SCENARIOS = ("item-get", "item-list")
"""The scenarios of this module; both run ``scripts/paths.lua``."""
ITEMS_PER_USER = 60
PAGE = 50
ABBA = ("on", "off", "off", "on")
"""The standby's state for each round of a read scenario: each state twice, at the same mean position."""
MAX_REQUESTS_BYTES = 100_000
"""Most bytes of ``BENCH_REQUESTS``: Linux refuses one environment string over 128 KiB (``MAX_ARG_STRLEN``)."""

READS = "ray_strata_db_reads_total"
ROTATION = "ray_strata_db_replica_in_rotation"
PRIMARY = "primary"
SERVICE = "data"


@dataclass(frozen=True)
class SeededUser:
    """A bench user with its collection and the items in it."""

    token: str
    collection_id: str
    item_ids: tuple[str, ...]


def item_path(collection_id: str, item_id: str) -> str:
    return f"/v1/collections/{collection_id}/items/{item_id}"


def list_path(collection_id: str, limit: int = PAGE) -> str:
    return f"/v1/collections/{collection_id}/items?limit={limit}"


def read_requests(scenario: str, users: Sequence[SeededUser]) -> list[tuple[int, str]]:
    """The requests of ``scenario`` as (index of the user's token in ``users``, path), interleaved across users: the
    n-th item of every user, then the next, so that any stretch of the rotation spreads over all of them."""
    if scenario == "item-list":
        return [(n, list_path(user.collection_id)) for n, user in enumerate(users)]
    if scenario == "item-get":
        most = max((len(user.item_ids) for user in users), default=0)
        return [
            (n, item_path(user.collection_id, user.item_ids[i]))
            for i in range(most)
            for n, user in enumerate(users)
            if i < len(user.item_ids)
        ]
    raise ValueError(f"not a read scenario: {scenario!r}")


def requests_env(
    tokens: Sequence[str], requests: Iterable[tuple[int, str]], *, max_bytes: int = MAX_REQUESTS_BYTES
) -> dict[str, str]:
    """What ``scripts/paths.lua`` reads: ``BENCH_TOKENS`` (comma-separated) and ``BENCH_REQUESTS``, comma-separated
    ``"<token number, from 1> <path>"``. The tokens travel once, not once per request; requests past ``max_bytes``
    are left out (the first ones, spread over every user, are kept)."""
    entries: list[str] = []
    size = 0
    for index, path in requests:
        if not 0 <= index < len(tokens):
            raise ValueError(f"request {path!r} names token {index}, of {len(tokens)}")
        if "," in path or " " in path:
            raise ValueError(f"a path of BENCH_REQUESTS holds neither commas nor spaces: {path!r}")
        entry = f"{index + 1} {path}"
        size += len(entry) + (1 if entries else 0)
        if size > max_bytes:
            break
        entries.append(entry)
    if not entries:
        raise ValueError("no request fits in BENCH_REQUESTS")
    return {"BENCH_TOKENS": ",".join(tokens), "BENCH_REQUESTS": ",".join(entries)}


def rounds(order: Sequence[str] = ABBA) -> list[tuple[str, int]]:
    """Each state of ``order`` with its round number (the first ``off`` is round 1 of ``off``, the next round 2)."""
    seen: dict[str, int] = {}
    numbered = []
    for state in order:
        seen[state] = seen.get(state, 0) + 1
        numbered.append((state, seen[state]))
    return numbered


# --- set-up -----------------------------------------------------------------------------------------------------------


def seed(endpoint: Endpoint, log: Log, *, items: int = ITEMS_PER_USER) -> tuple[list[SeededUser], int]:
    """For each of the endpoint's users, a collection with ``items`` items, then one item and one page read back
    (each must answer 200); returns the users and how many reads the check made."""
    users: list[SeededUser] = []
    reads = 0
    with httpx.Client(base_url=endpoint.base_url, verify=endpoint.verify, timeout=30) as client:
        for n, token in enumerate(endpoint.tokens):
            auth = {"Authorization": f"Bearer {token}"}
            made = post_json(client, "/v1/collections", {"name": f"bench reads {n}"}, 201, headers=auth)
            batch = {"items": [{"title": f"item {i}", "attributes": {"n": i}, "tags": ["bench"]} for i in range(items)]}
            created = post_json(client, f"/v1/collections/{made['id']}/items/batch", batch, 200, headers=auth)
            user = SeededUser(token, made["id"], tuple(item["id"] for item in created["items"]))
            for path in (item_path(user.collection_id, user.item_ids[0]), list_path(user.collection_id)):
                answer = client.get(path, headers=auth)
                if answer.status_code != 200:
                    raise TargetError(f"GET {path} answered {answer.status_code}: {answer.text[:300]}")
                reads += 1
            page = answer.json()["items"]
            if len(page) != min(PAGE, items):
                raise TargetError(f"a page of {PAGE} of {items} items held {len(page)}")
            users.append(user)
    log(f"  {len(users)} users made a collection of {items} items each")
    return users, reads


# --- strata's metrics -------------------------------------------------------------------------------------------------


def samples(text: str, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of ``name`` in Prometheus exposition ``text`` whose labels include ``labels``."""
    found = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                found.append((dict(sample.labels), float(sample.value)))
    return found


def reads_by_target(text: str) -> dict[str, float]:
    """The data service's reads so far by where they ran (``primary`` or a standby), summed over its replicas."""
    counts: dict[str, float] = {}
    for labels, value in samples(text, READS, service=SERVICE):
        target = labels.get("target", "?")
        counts[target] = counts.get(target, 0.0) + value
    return counts


def standby_share(before: dict[str, float], after: dict[str, float]) -> tuple[int, float | None]:
    """Reads between two counts, and the % of them on a standby (any target but the primary); ``None``: no reads."""
    delta = {target: after.get(target, 0.0) - before.get(target, 0.0) for target in after.keys() | before.keys()}
    total = sum(delta.values())
    if total <= 0:
        return 0, None
    on_standby = sum(value for target, value in delta.items() if target != PRIMARY)
    return round(total), round(100.0 * on_standby / total, 1)


def successes(result: Any) -> int:
    """Responses of a wrk run that were 2xx: each is one read of the data service."""
    return int(result.requests) - int(result.errors.get("http", 0))


Scrape = Callable[[], str]


def scrape_from(url: str) -> Scrape:
    def scrape() -> str:
        return httpx.get(url, timeout=10).text

    return scrape


class DataReads:
    """strata's count of the data service's reads, kept in step with the reads the bench sent.

    :meth:`sent` adds a run's successful requests to what the count should reach; :meth:`settle` waits, bounded, until
    Ray's export shows at least that many, and returns the count. strata may have served a few reads more than wrk
    counted (those in flight when wrk stopped, at most one per connection): the count then reaches the mark while the
    last of them are still on their way, and they show in the next interval. Counted reads past the mark are taken
    into it, so that this slack does not grow from run to run; settling again after the standby was switched (which
    waits for at least one export) puts a run's tail on its own side of the switch.
    """

    def __init__(self, scrape: Scrape, log: Log, *, patience_s: float = 60.0, poll_s: float = 1.0) -> None:
        self._scrape = scrape
        self._log = log
        self._patience_s = patience_s
        self._poll_s = poll_s
        self.last = reads_by_target(scrape())
        self.expected = sum(self.last.values())

    def sent(self, reads: int) -> None:
        self.expected += reads

    def settle(self) -> dict[str, float]:
        deadline = time.monotonic() + self._patience_s
        counts = reads_by_target(self._scrape())
        while sum(counts.values()) < self.expected and time.monotonic() < deadline:
            time.sleep(self._poll_s)
            counts = reads_by_target(self._scrape())
        if sum(counts.values()) < self.expected:
            self._log(
                f"  strata counted {sum(counts.values()):.0f} reads of the {self.expected:.0f} sent within"
                f" {self._patience_s:.0f}s: the share below covers those"
            )
        self.expected = max(self.expected, sum(counts.values()))
        self.last = counts
        return counts


# --- the standby, on and off ------------------------------------------------------------------------------------------

_CAUGHT_UP = (
    "SELECT count(*) FILTER (WHERE state = 'streaming' AND replay_lsn >= $1::text::pg_lsn) FROM pg_stat_replication"
)


class StandbySwitch:
    """Stops and starts the standbys of one running strata, and waits until strata's routing has seen the change."""

    def __init__(self, system: StrataSystem, scrape: Scrape, log: Log, *, patience_s: float = 120.0) -> None:
        self._system = system
        self._scrape = scrape
        self._log = log
        self._patience_s = patience_s
        self.on = True

    def available(self) -> bool:
        """Whether the system runs embedded standbys that this switch can stop and start."""
        from strata.cluster._state import State

        recorded = State.load(self._system.settings.data_dir.resolve()).components.get("standby")
        return recorded is not None and recorded.alive()

    def ready(self) -> None:
        """Before the first round: the standby in rotation, as after :meth:`turn` on."""
        self._in_rotation(1.0)

    def turn(self, on: bool) -> None:
        """Stop (``on`` false) or start the standbys, unless they already are so, and wait until strata sees it."""
        if on == self.on:
            return
        from strata.cluster import start_component, stop_component

        settings = self._system.settings
        started = time.monotonic()
        if on:
            start_component(settings, "standby")
            self._caught_up()
            self._in_rotation(1.0)
        else:
            stop_component(settings, "standby")
            self._in_rotation(0.0)
        self.on = on
        what = "started, caught up and in rotation" if on else "stopped, out of rotation"
        self._log(f"  standby {what} ({time.monotonic() - started:.0f}s)")

    def _caught_up(self) -> None:
        """Every standby streams and has replayed what the primary had written when it came back."""
        import asyncpg

        standbys = int(self._system.settings.postgres_standbys)

        async def wait() -> None:
            conn = await asyncpg.connect(self._system.admin_dsn, timeout=10)
            try:
                target = await conn.fetchval("SELECT pg_current_wal_lsn()::text")
                deadline = time.monotonic() + self._patience_s
                while (await conn.fetchval(_CAUGHT_UP, target)) < standbys:
                    if time.monotonic() > deadline:
                        raise TargetError(f"the standby did not catch up with {target} within {self._patience_s:.0f}s")
                    await asyncio.sleep(0.2)
            finally:
                await conn.close()

        asyncio.run(wait())

    def _in_rotation(self, wanted: float) -> None:
        """Wait (bounded) until every data replica's gauge says the standby is in rotation (1) or out of it (0)."""
        deadline = time.monotonic() + self._patience_s
        while True:
            values = [value for _, value in samples(self._scrape(), ROTATION, service=SERVICE)]
            if values and all(value == wanted for value in values):
                return
            if time.monotonic() > deadline:
                self._log(
                    f"  the data service's replicas report {values} for the standby in rotation, not {wanted:g},"
                    f" after {self._patience_s:.0f}s: measuring anyway (the share of reads on the standby tells)"
                )
                return
            time.sleep(1.0)


@dataclass
class ReadBench:
    """What the read scenarios share on one target: the users' items, the standby switch and strata's read count."""

    users: list[SeededUser]
    switch: StandbySwitch
    reads: DataReads
