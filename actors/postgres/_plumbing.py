"""The tables every component of a kind has, from one definition: the outbox and the inbox.

Which component has which follows from its :class:`~strata.schemas.ServiceSpec`: an outbox if ``outbox=True``, an
inbox if it runs consumer groups. Their SQL lives once, in ``plumbing/<kind>/NNNN_what.sql`` beside this module, and
names no schema: the runner applies it in each component's schema (``search_path``, set with the identifier quoted by
the server's ``format('%I')``), as the component's role, so the tables belong to it as its own files' tables do. A
later change to a kind's tables is its next file there, applied to every component of that kind.

Databases migrated before the plumbing was shared made these tables with their own files (auth ``0001_outbox.sql``
and ``0003_inbox.sql``, users ``0001_outbox.sql`` and ``0002_profiles.sql``, data ``0001_outbox.sql`` and
``0003_collections.sql``, audit ``0001_audit_log.sql``). The outbox files are gone and the others ship without their
inbox DDL; :data:`SUPERSEDED` holds the checksums those databases recorded, so the runner recognises exactly them:
the plumbing's ``CREATE ... IF NOT EXISTS`` finds the tables already there (same columns, constraints, indexes and
owner), and the old records are settled to what a fresh database records (``apply_migrations``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import asyncpg

from strata.actors.postgres._migrations import Migration, apply_migrations, load_migrations, service_migrations_dir
from strata.schemas import ServiceSpec

PlumbingKind = Literal["outbox", "inbox"]

PLUMBING_DIR = Path(__file__).parent / "plumbing"

SUPERSEDED: Mapping[str, Mapping[str, str]] = {
    "auth": {
        "0001_outbox.sql": "9ae0a095f62dd0b651fb8fe8592e1d5786a0c55aea92063e35c5712bd3a784ab",
        "0003_inbox.sql": "aae2b1721214ca11cda7581e9fb231d72b42a865bf82533e3e188e636b17e3f1",
    },
    "users": {
        "0001_outbox.sql": "9ae0a095f62dd0b651fb8fe8592e1d5786a0c55aea92063e35c5712bd3a784ab",
        "0002_profiles.sql": "a9e37e694361143c3af55928992b3b5757c130cc8af6377ca2af491688f1e755",
    },
    "data": {
        "0001_outbox.sql": "9ae0a095f62dd0b651fb8fe8592e1d5786a0c55aea92063e35c5712bd3a784ab",
        "0003_collections.sql": "23720cc59063a8a36718c62338c22a2d900598017ab29e78ec5bd2472cd3eab9",
    },
    "audit": {
        "0001_audit_log.sql": "f3e9dc3312160af2581b9a86acd53fc62b0b296ff9862b58190dce166a2d0ff9",
    },
}
"""Per service, the files that carried outbox or inbox DDL before it was shared, with the SHA-256 databases recorded
for them (``tests/fixtures/migrations_0/`` keeps the files; a unit test checks these against them)."""


def plumbing_kinds(spec: ServiceSpec) -> tuple[PlumbingKind, ...]:
    """The shared tables ``spec``'s schema has: an outbox if it records events, an inbox if it consumes them."""
    kinds: list[PlumbingKind] = []
    if spec.outbox:
        kinds.append("outbox")
    if spec.consumer_groups:
        kinds.append("inbox")
    return tuple(kinds)


def plumbing_migrations(spec: ServiceSpec) -> list[Migration]:
    """The shared steps of ``spec``'s schema, in order, each named ``<kind>/NNNN_what.sql``."""
    return [
        Migration(step.version, f"{kind}/{step.name}", step.sql)
        for kind in plumbing_kinds(spec)
        for step in load_migrations(PLUMBING_DIR / kind)
    ]


async def migrate_component(
    conn: asyncpg.Connection, spec: ServiceSpec, params: Mapping[str, str] | None = None
) -> list[str]:
    """Apply what is pending for ``spec``'s schema: its plumbing, then its own ``migrations/``; the names applied.

    ``conn`` is an admin connection and the component's role and schema exist
    (:func:`~strata.actors.postgres.ensure_service_role`).
    """
    return await apply_migrations(
        conn,
        spec.name,
        load_migrations(service_migrations_dir(spec.name)),
        params,
        plumbing=plumbing_migrations(spec),
        superseded=SUPERSEDED.get(spec.name),
    )
