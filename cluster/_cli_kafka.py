"""`strata kafka-user ...`: read-only Kafka principals for external consumers of strata's events.

A principal made here authenticates with SCRAM-SHA-512 and may read only the
topics it was given (exact names, or ``prefix*``), with consumer groups named
``<its name>.<anything>``. It can write nothing, create nothing and see
no other topic. Its password is generated here and printed once; Kafka keeps
only a salted hash of it.

``repair`` gives strata's embedded broker back the credentials Kafka 4.1 can
drop when it starts (KAFKA-20774): see :func:`repair_kafka`.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from typing import Annotated

import typer

from strata.actors.kafka import PRINCIPAL_PREFIX, Acl, KafkaAdmin, group_prefix, reader_acls
from strata.cluster._cli_services import running_strata
from strata.cluster._component import Context, Echo, running
from strata.cluster._components import KafkaComponent, event_topics
from strata.cluster._errors import ClusterError
from strata.cluster._runtime import resolve
from strata.cluster._state import Recorded, State, exclusive
from strata.schemas import Settings

kafka_users_app = typer.Typer(
    help="Read-only Kafka principals for external consumers: add, remove, list; repair strata's own.",
    no_args_is_help=True,
)

_RESERVED = PRINCIPAL_PREFIX.rstrip("-")  # strata-<component> principals, strata.dlq-replay.<group> groups
_NAME = re.compile(r"[a-z][a-z0-9._-]{2,63}")


class BadKafkaUser(ClusterError):
    """A principal name or topic that `strata kafka-user` refuses."""


def _check_name(name: str) -> None:
    """A principal name `strata kafka-user` may make or remove (never one of strata's own components)."""
    if not _NAME.fullmatch(name):
        raise BadKafkaUser(f"principal name {name!r}: 3-64 of a-z, 0-9, '.', '_', '-', starting with a letter")
    if name.startswith(_RESERVED):
        raise BadKafkaUser(f"names starting with {_RESERVED!r} belong to strata's own principals and groups")


def reader_policy(name: str, topics: list[str], known: list[str]) -> set[Acl]:
    """The ACLs of a read-only principal ``name`` over ``topics``; :class:`BadKafkaUser` for what it may not have."""
    _check_name(name)
    if not topics:
        raise BadKafkaUser("give at least one --read TOPIC (a name, or a prefix ending in '*')")
    for topic in topics:
        prefix = topic.removesuffix("*")
        matches = (
            [t for t in known if t.startswith(prefix)] if topic.endswith("*") else [t for t in known if t == topic]
        )
        if not prefix.startswith("strata.") or not matches:
            raise BadKafkaUser(f"{topic!r} names no strata topic; the topics are: {', '.join(known)}")
    return reader_acls(name, topics)


@kafka_users_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Username of the principal, e.g. billing-reader.")],
    read: Annotated[
        list[str], typer.Option("--read", help="A topic it may read (repeat; 'strata.data.*' for a prefix).")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the credentials as one JSON object.")] = False,
) -> None:
    """Create principal NAME that may read the given topics (and use consumer groups named NAME.<anything>).

    Prints its password once. Running it again for the same NAME gives it a new password and these topics."""
    acls = reader_policy(name, read, event_topics())
    password = secrets.token_urlsafe(24)
    settings = running_strata().settings

    async def work() -> None:
        async with KafkaAdmin(settings) as admin:
            await admin.converge(name, password, acls)

    asyncio.run(work())
    topics = sorted(acl.name + ("*" if acl.pattern == "prefixed" else "") for acl in acls if acl.resource == "topic")
    answer = {
        "username": name,
        "password": password,
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
        "sasl_mechanism": "SCRAM-SHA-512",
        "topics": topics,
        "group_prefix": group_prefix(name),
    }
    if as_json:
        typer.echo(json.dumps(answer))
        return
    for key, value in answer.items():
        typer.echo(f"{key}: {', '.join(value) if isinstance(value, list) else value}")
    typer.echo("the password is shown this once: Kafka keeps only its salted hash", err=True)


@kafka_users_app.command("remove")
def remove(name: Annotated[str, typer.Argument(help="Username of the principal.")]) -> None:
    """Remove principal NAME: every ACL that names it goes, and its password is replaced by a random one nobody
    keeps. A connection it still has open is refused every request from then on (the broker authorizes each one),
    and it cannot log in again."""
    _check_name(name)
    settings = running_strata().settings

    async def work() -> bool:
        async with KafkaAdmin(settings) as admin:
            await admin.delete_all_acls_of(name)
            if not await admin.has_user(name):
                return False
            # Overwritten, never deleted: a deletion record can make Kafka drop every principal's credential at its
            # next start (KAFKA-20774; KafkaAdmin.retire_user says how).
            await admin.retire_user(name)
            return True

    existed = asyncio.run(work())
    typer.echo(
        f"removed Kafka principal {name}: no ACL names it and its password no longer logs in"
        if existed
        else f"no Kafka principal {name} (no ACL names it)"
    )


@kafka_users_app.command("list")
def list_users(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per principal.")] = False,
) -> None:
    """Every principal with ACLs, and what it may read or write (strata's components included)."""
    settings = running_strata().settings

    async def work() -> dict[str, list[str]]:
        async with KafkaAdmin(settings) as admin:
            rules = await admin.all_acls()
        by_principal: dict[str, list[str]] = {}
        for acl in sorted(rules):
            suffix = "*" if acl.pattern == "prefixed" else ""
            by_principal.setdefault(acl.principal, []).append(f"{acl.operation} {acl.resource} {acl.name}{suffix}")
        return by_principal

    for principal, grants in asyncio.run(work()).items():
        if as_json:
            typer.echo(json.dumps({"principal": principal, "grants": grants}))
        else:
            typer.echo(f"{principal}: {'; '.join(grants)}")


def repair_kafka(settings: Settings, echo: Echo = typer.echo) -> None:
    """Give strata's embedded broker back the SCRAM credentials of strata's principals; Kafka is left running if it
    ran (recorded as always), stopped if it was stopped.

    For a data dir whose broker refuses strata-admin at start: Kafka 4.1 to 4.4 can drop every SCRAM credential
    when it rebuilds them from a metadata log holding a credential removal (KAFKA-20774), which older
    `strata kafka-user remove` wrote. :meth:`~strata.cluster._components.KafkaComponent.repair` says how.
    """
    data_dir = settings.data_dir.resolve()
    with exclusive(data_dir):
        state = State.load(data_dir)
        runtime = resolve(settings, state, create=False)
        component = KafkaComponent(Context(settings, runtime, state))
        recorded = state.components.get(component.name)
        was_running = running(recorded)

        def record(entry: Recorded) -> None:
            state.components[entry.name] = entry
            state.save(data_dir)

        try:
            component.repair(recorded, record, echo)
        finally:
            if not was_running:
                component.stop(state.components.pop(component.name, None), echo)
            state.save(data_dir)
    echo("Kafka's credentials are repaired" + ("" if was_running else "; run `strata up`"))


@kafka_users_app.command("repair")
def repair() -> None:
    """Repair strata's embedded Kafka when it refuses strata's own principals (KAFKA-20774).

    Stops Kafka if it runs, starts it once with an extra listener on 127.0.0.1 only (SASL PLAIN, a random
    password made for this repair, in the broker's configuration for that start only), and there re-creates the
    credentials of strata-broker, strata-admin and every component principal from this data dir's secrets, and
    overwrites with a random secret every credential whose last record is a removal. Then it starts Kafka normally
    without that listener, checks that strata's principals log in, and leaves Kafka running only if it was. Other
    principals (`kafka-user add`) keep their passwords."""
    repair_kafka(Settings())
