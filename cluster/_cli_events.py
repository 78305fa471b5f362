"""`strata events ...`: event schemas and dead letters."""

from __future__ import annotations

import typer

events_app = typer.Typer(help="strata's events: JSON Schemas, dead-letter topics.", no_args_is_help=True)
