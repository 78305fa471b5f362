"""How a consumer retries an event's effect: failures count, an unavailable database does not, a timeout depends."""

from __future__ import annotations

import pytest

from strata.actors.consumers._runner import GaveUp, apply_with_retries
from strata.actors.postgres import CommandTimedOut, DatabaseUnavailable
from strata.actors.postgres._errors import translate


class Effect:
    """An effect failing with each of ``failures`` in turn, then succeeding."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def __call__(self) -> bool:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return True


class Pauses:
    def __init__(self) -> None:
        self.slept: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)


def _answers(value: bool):  # type: ignore[no-untyped-def]
    async def database_answers() -> bool:
        return value

    return database_answers


async def test_an_effect_that_times_out_every_time_reaches_the_dlq_after_the_configured_attempts() -> None:
    effect = Effect(*(CommandTimedOut("database command timed out") for _ in range(100)))
    pauses = Pauses()

    outcome = await apply_with_retries(
        effect, max_attempts=5, first_pause_s=0.2, database_answers=_answers(True), sleep=pauses
    )

    assert isinstance(outcome, GaveUp) and outcome.attempts == 5 and isinstance(outcome.error, CommandTimedOut)
    assert effect.calls == 5
    assert pauses.slept == [0.2, 0.4, 0.8, 1.6]


async def test_a_timeout_while_the_database_does_not_answer_is_waited_out_without_counting() -> None:
    effect = Effect(*(CommandTimedOut("database command timed out") for _ in range(20)))
    seen: list[DatabaseUnavailable] = []

    outcome = await apply_with_retries(
        effect,
        max_attempts=3,
        first_pause_s=0.2,
        database_answers=_answers(False),
        on_database_unavailable=seen.append,
        sleep=Pauses(),
    )

    assert outcome is True and effect.calls == 21 and len(seen) == 20


async def test_an_unreachable_database_never_counts_and_other_failures_do() -> None:
    effect = Effect(DatabaseUnavailable("gone"), ValueError("bad"), DatabaseUnavailable("gone"), ValueError("bad"))

    outcome = await apply_with_retries(
        effect, max_attempts=2, first_pause_s=0.1, database_answers=_answers(True), sleep=Pauses()
    )

    assert isinstance(outcome, GaveUp) and outcome.attempts == 2 and isinstance(outcome.error, ValueError)
    assert effect.calls == 4


@pytest.mark.parametrize("attempts", [1, 3])
async def test_success_after_failures_is_the_effects_result(attempts: int) -> None:
    effect = Effect(*(RuntimeError("flaky") for _ in range(attempts - 1)))

    assert await apply_with_retries(
        effect, max_attempts=attempts, first_pause_s=0.1, database_answers=_answers(True), sleep=Pauses()
    )


def test_asyncpgs_command_timeout_becomes_command_timed_out_an_unavailable_database() -> None:
    error = translate(TimeoutError())

    assert isinstance(error, CommandTimedOut) and isinstance(error, DatabaseUnavailable) and error.retriable
