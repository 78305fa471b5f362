"""The replica's fault point in front of its database passes a unit of work's arguments through unchanged."""

from __future__ import annotations

from typing import Any

from strata.serve_apps._faults import ReplicaFaults
from strata.serve_apps._faulty_database import FaultyDatabase


class RecordingDatabase:
    """Just enough of a Database: records what reaches ``run_in_transaction``."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, tuple[Any, ...], str, dict[str, Any]]] = []

    async def run_in_transaction(self, fn: Any, /, *args: Any, isolation: str = "read_committed", **kwargs: Any) -> str:
        self.calls.append((fn, args, isolation, kwargs))
        return "done"


async def unit_of_work(conn: Any, *args: Any, **kwargs: Any) -> None:
    """Never run here: only its identity is checked."""


async def test_positional_and_keyword_arguments_and_the_isolation_pass_the_fault_point() -> None:
    inner = RecordingDatabase()
    faults = ReplicaFaults(enabled=True)
    as_database: Any = inner  # a partial fake, standing in for the Database protocol
    db = FaultyDatabase(as_database, faults)

    result = await db.run_in_transaction(unit_of_work, "a", 2, cursor=None, limit=5, isolation="serializable")

    assert result == "done"
    assert inner.calls == [(unit_of_work, ("a", 2), "serializable", {"cursor": None, "limit": 5})]
    assert faults.served == 1  # the call passed the fault point once
