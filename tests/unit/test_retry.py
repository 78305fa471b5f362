from __future__ import annotations

import asyncio

import pytest

from strata.actors._retry import Backoff, keep_running


def test_backoff_doubles_up_to_its_cap_and_resets_on_success() -> None:
    backoff = Backoff(first=0.1, cap=0.5)
    assert [backoff.failed() for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    backoff.succeeded()
    assert backoff.failed() == 0.1


async def test_keep_running_reports_every_failure_and_goes_on_until_cancelled() -> None:
    calls = 0
    errors: list[tuple[str, float]] = []
    fourth = asyncio.Event()

    async def step() -> None:
        nonlocal calls
        calls += 1
        if calls == 4:
            fourth.set()
        raise RuntimeError(f"failure {calls}")

    task = asyncio.create_task(
        keep_running(step, Backoff(first=0.001, cap=0.002), lambda e, p: errors.append((str(e), p)))
    )
    await asyncio.wait_for(fourth.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [e for e, _ in errors[:3]] == ["failure 1", "failure 2", "failure 3"]
    assert [p for _, p in errors[:3]] == [0.001, 0.002, 0.002]
