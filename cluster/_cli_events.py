"""`strata events ...`: event schemas and dead letters."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from strata.cluster._errors import ClusterError
from strata.schemas.events import schema_dir, schema_drift, write_schemas

events_app = typer.Typer(help="strata's events: JSON Schemas, dead-letter topics.", no_args_is_help=True)


@events_app.command("schemas")
def schemas(
    check: Annotated[
        bool, typer.Option("--check", help="Change nothing; exit 1 if a file differs from the models.")
    ] = False,
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Folder of the schema files (default: schemas/events/json/ of the package)."),
    ] = None,
) -> None:
    """Regenerate the JSON Schema of every event type from the models (one `<type>.json` each)."""
    folder = directory if directory is not None else schema_dir()
    drift = schema_drift(folder)
    if check:
        if drift:
            # One line per file; the last one, printed by the CLI's main, says what to do.
            for line in drift:
                typer.echo(f"strata: error: {line}", err=True)
            raise ClusterError(f"{len(drift)} event schema file(s) differ from the models: run `make schemas`")
        typer.echo(f"event schemas up to date in {folder}")
        return
    if not drift:
        typer.echo(f"event schemas up to date in {folder}")
        return
    for line in drift:
        typer.echo(line)
    write_schemas(folder)
    typer.echo(f"{len(drift)} event schema file(s) written or removed in {folder}")
