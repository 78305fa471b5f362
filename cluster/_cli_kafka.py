"""`strata kafka-user ...`: read-only Kafka principals for external consumers of strata's events.

A principal made here authenticates with SCRAM-SHA-512 and may read only the
topics it was given (exact names, or ``prefix*``), with consumer groups named
``<its name>.<anything>``. It can write nothing, create nothing and see
no other topic. Its password is generated here and printed once; Kafka keeps
only a salted hash of it.
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
from strata.cluster._components import event_topics
from strata.cluster._errors import ClusterError

kafka_users_app = typer.Typer(
    help="Read-only Kafka principals for external consumers: add, remove, list.", no_args_is_help=True
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
    """Remove principal NAME: its credential and every ACL that names it. A connection it still has open is
    refused every request from then on (the broker authorizes each one), and it cannot log in again."""
    _check_name(name)
    settings = running_strata().settings

    async def work() -> bool:
        async with KafkaAdmin(settings) as admin:
            await admin.delete_all_acls_of(name)
            return await admin.delete_user(name)

    existed = asyncio.run(work())
    typer.echo(f"removed Kafka principal {name}" if existed else f"no Kafka principal {name} (its ACLs are gone)")


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
