"""`strata events dlq ...`: list and replay a consumer group's dead letters."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from strata.actors.kafka import OriginUnreadable, list_dead_letters, replay_dead_letters
from strata.cluster._cli_services import running_strata
from strata.cluster._errors import ClusterError

dlq_app = typer.Typer(help="Dead letters of a consumer group: list them, replay them once fixed.", no_args_is_help=True)


@dlq_app.command("list")
def list_letters(
    group: Annotated[str, typer.Argument(help="Consumer group, e.g. audit.")],
    show_all: Annotated[bool, typer.Option("--all", help="Include letters already replayed.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per letter.")] = False,
) -> None:
    """Show the dead letters of GROUP not replayed yet (or all): origin, error, attempts."""
    letters = asyncio.run(list_dead_letters(running_strata().settings, group, pending_only=not show_all))
    if as_json:
        for letter in letters:
            typer.echo(json.dumps(letter.as_dict()))
        return
    if not letters:
        typer.echo(f"no {'' if show_all else 'pending '}dead letters for group {group!r}")
        return
    for letter in letters:
        info = letter.as_dict()
        typer.echo(
            f"{info['partition']}@{info['offset']}  from {info['origin']}  after {info['attempts']} attempt(s)"
            f"  {info['error_type']}: {info['error']}"
        )


@dlq_app.command("replay")
def replay(group: Annotated[str, typer.Argument(help="Consumer group, e.g. audit.")]) -> None:
    """Send GROUP's pending dead letters back to their original topics (after fixing their cause).

    A letter goes back only to a topic GROUP reads, and only if that topic still holds the letter's record at the
    partition and offset it names; any other letter is refused (listed here, exit status 1) and not replayed later.
    """
    try:
        report = asyncio.run(replay_dead_letters(running_strata().settings, group))
    except OriginUnreadable as exc:
        raise ClusterError(str(exc)) from exc
    typer.echo(f"replayed {len(report.replayed)} dead letter(s) of group {group!r}")
    for refused in report.refused:
        letter = refused.letter
        typer.echo(f"refused {letter.partition}@{letter.offset} from {letter.origin}: {refused.reason}", err=True)
    if report.refused:
        raise typer.Exit(1)
