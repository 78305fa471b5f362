"""Kafka principals and ACLs: who may write and read which strata topic, derived from the service registry.

:func:`component_acls` is the whole policy, as data: each service may write
only the topics it publishes (and its consumer groups' dead-letter topics) and
read only its consumer groups' topics with only those groups; a component
that reads without a group (the gateway's revocation feed) reads only the
topics its spec names. :func:`provision` makes the broker agree with it,
idempotently: SCRAM credentials for every component principal, the ACLs the
policy lists, and no other ACL of a component principal.

The admin requests (AlterUserScramCredentials, DescribeUserScramCredentials,
CreateAcls, DescribeAcls, DeleteAcls) go through aiokafka's protocol layer; the
admin client has no methods for them.

A principal is never removed with a SCRAM credential deletion: see
:meth:`KafkaAdmin.retire_user`.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeAlias

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import (
    CreateAclsRequest_v1,
    DeleteAclsRequest_v1,
    DescribeAclsRequest_v1,
)
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import CompactArray, CompactBytes, CompactString, Int8, Int16, Int32, Schema, TaggedFields

from strata.actors.kafka._security import ADMIN, client_options, credentials, principal_name
from strata.actors.kafka._topics import dlq_topic
from strata.schemas import REGISTRY, ServiceSpec, Settings

Resource = Literal["topic", "group"]
Operation = Literal["read", "write"]
Pattern = Literal["literal", "prefixed"]

_RESOURCE = {"topic": 2, "group": 3}
_OPERATION = {"read": 3, "write": 4}
_PATTERN = {"literal": 3, "prefixed": 4}
_ANY, _ALLOW = 1, 3
_SCRAM_SHA_512 = 2
_SCRAM_ITERATIONS = 8192  # Kafka's minimum for SCRAM-SHA-512 is 4096


class KafkaAdminError(RuntimeError):
    """The broker refused an admin request (the error is Kafka's, with its code)."""


@dataclass(frozen=True, order=True, slots=True)
class Acl:
    """One ALLOW rule: ``principal`` (a username) may ``operation`` the ``resource`` named ``name``.

    READ implies DESCRIBE and WRITE implies DESCRIBE in Kafka, so these two operations are all strata grants.
    """

    principal: str
    resource: Resource
    name: str
    operation: Operation
    pattern: Pattern = "literal"

    def creation(self) -> tuple[Any, ...]:
        return (
            _RESOURCE[self.resource],
            self.name,
            _PATTERN[self.pattern],
            f"User:{self.principal}",
            "*",
            _OPERATION[self.operation],
            _ALLOW,
        )


def spec_acls(spec: ServiceSpec) -> set[Acl]:
    """What the principal of ``spec`` may do: write its topics, read its groups' topics (and the ones it reads)."""
    user = principal_name(spec.name)
    acls = {Acl(user, "topic", topic, "write") for topic in spec.publishes}
    for group in spec.consumer_groups:
        acls.add(Acl(user, "group", group.group, "read"))
        acls.add(Acl(user, "topic", dlq_topic(group.group), "write"))
        acls.update(Acl(user, "topic", topic, "read") for topic in group.topics)
    acls.update(Acl(user, "topic", topic, "read") for topic in spec.reads)
    return acls


def component_acls(registry: tuple[ServiceSpec, ...] = REGISTRY) -> set[Acl]:
    """Every ACL of every component principal: the whole policy."""
    return set().union(*(spec_acls(spec) for spec in registry))


def group_prefix(username: str) -> str:
    """What the consumer groups of an external reader start with: its name and a dot."""
    return f"{username}."


def reader_acls(username: str, topics: list[str]) -> set[Acl]:
    """An external read-only principal: read ``topics`` (``prefix*`` for a prefix) with groups named ``<username>.*``.

    The dot matters: a bare ``<username>`` prefix would let a reader named ``audi`` join strata's own group
    ``audit``, take some of its partitions and commit past events the audit log never recorded.
    """
    acls = {Acl(username, "group", group_prefix(username), "read", "prefixed")}
    for topic in topics:
        if topic.endswith("*"):
            acls.add(Acl(username, "topic", topic[:-1], "read", "prefixed"))
        else:
            acls.add(Acl(username, "topic", topic, "read"))
    return acls


class _AlterUserScramCredentialsResponse_v0(Response):  # type: ignore[misc]  # aiokafka is untyped
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "results",
            CompactArray(
                ("user_name", CompactString("utf-8")),
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _AlterUserScramCredentialsRequest_v0(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = _AlterUserScramCredentialsResponse_v0
    SCHEMA = Schema(
        (
            "deletions",
            CompactArray(("name", CompactString("utf-8")), ("mechanism", Int8), ("tags", TaggedFields)),
        ),
        (
            "upsertions",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("mechanism", Int8),
                ("iterations", Int32),
                ("salt", CompactBytes),
                ("salted_password", CompactBytes),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _DescribeUserScramCredentialsResponse_v0(Response):  # type: ignore[misc]  # aiokafka is untyped
    API_KEY = 50
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        ("error_message", CompactString("utf-8")),
        (
            "results",
            CompactArray(
                ("user", CompactString("utf-8")),
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                ("credential_infos", CompactArray(("mechanism", Int8), ("iterations", Int32), ("tags", TaggedFields))),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _DescribeUserScramCredentialsRequest_v0(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 50
    API_VERSION = 0
    RESPONSE_TYPE = _DescribeUserScramCredentialsResponse_v0
    SCHEMA = Schema(
        ("users", CompactArray(("name", CompactString("utf-8")), ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


_Struct: TypeAlias = Any


class _Prepared(Request[_Struct]):  # type: ignore[misc]
    """A request of one fixed version, built from its fields (aiokafka's builders carry one ACL per request)."""

    API_KEY: ClassVar[int] = 0

    def __init__(self, struct_class: type[RequestStruct], *fields: Any) -> None:
        self._struct_class = struct_class
        self._fields = fields
        self.API_KEY = struct_class.API_KEY  # type: ignore[misc]

    def build(self, request_struct_class: type[_Struct]) -> _Struct:
        return self._struct_class(*self._fields)

    def prepare(self, versions: dict[int, tuple[int, int]]) -> _Struct:
        low, high = versions.get(self._struct_class.API_KEY, (0, -1))
        if not low <= self._struct_class.API_VERSION <= high:
            raise KafkaAdminError(
                f"the broker does not speak version {self._struct_class.API_VERSION} of Kafka API"
                f" {self._struct_class.API_KEY} (it speaks {low}..{high})"
            )
        return self.build(self._struct_class)


def _salted(password: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _SCRAM_ITERATIONS)


class KafkaAdmin:
    """The admin principal's connection: principals and ACLs. Use as ``async with KafkaAdmin(settings) as admin``."""

    def __init__(self, settings: Settings) -> None:
        self._client = AIOKafkaAdminClient(**client_options(settings, ADMIN), request_timeout_ms=15_000)

    async def __aenter__(self) -> KafkaAdmin:
        await self._client.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.close()

    async def _send(self, request: Request[Any]) -> Any:
        return await self._client._send_to_controller(request)

    async def upsert_user(self, username: str, password: str) -> None:
        """Create or change the SCRAM-SHA-512 credential of ``username`` (the broker keeps only the salted hash)."""
        salt = secrets.token_bytes(32)
        upsertion: tuple[Any, ...] = (username, _SCRAM_SHA_512, _SCRAM_ITERATIONS, salt, _salted(password, salt), {})
        await self._alter_users([], [upsertion])

    async def retire_user(self, username: str) -> None:
        """Make ``username`` unable to log in: its SCRAM-SHA-512 credential becomes one of a random secret that is
        kept nowhere (a random salt, too).

        Not a deletion, on purpose: Kafka 4.1 to 4.4 (KAFKA-20774) rebuilds the credentials from the metadata log
        when it starts, and a deletion that is the last record of its name, met first in the hash order of the
        names, drops every SCRAM credential of every principal, strata's own included. An overwrite is an upsert
        record like any other, which that rebuild applies correctly, and it logs nobody in all the same.
        """
        await self.upsert_user(username, secrets.token_urlsafe(32))

    async def has_user(self, username: str) -> bool:
        """Whether ``username`` has a SCRAM-SHA-512 credential."""
        response = await self._send(_Prepared(_DescribeUserScramCredentialsRequest_v0, [(username, {})], {}))
        if response.error_code != 0:
            raise KafkaAdminError(
                f"Kafka refused to describe credentials (error {response.error_code}): {response.error_message}"
            )
        for _user, code, message, infos, _tags in response.results:
            if code == 91:  # RESOURCE_NOT_FOUND: no credential of that name
                return False
            if code != 0:
                raise KafkaAdminError(f"Kafka refused to describe {username}'s credentials (error {code}): {message}")
            return any(mechanism == _SCRAM_SHA_512 for mechanism, _iterations, _tags in infos)
        return False

    async def _alter_users(self, deletions: list[tuple[Any, ...]], upsertions: list[tuple[Any, ...]]) -> None:
        # strata sends no deletion (see retire_user); the argument stays so the request is the protocol's own.
        response = await self._send(_Prepared(_AlterUserScramCredentialsRequest_v0, deletions, upsertions, {}))
        for _name, code, message, _tags in response.results:
            if code != 0:
                raise KafkaAdminError(f"Kafka refused the credential change (error {code}): {message}")

    async def create_acls(self, acls: set[Acl]) -> None:
        """Add ``acls`` (adding one that exists changes nothing)."""
        if not acls:
            return
        response = await self._send(_Prepared(CreateAclsRequest_v1, [acl.creation() for acl in sorted(acls)]))
        for code, message in response.creation_responses:
            if code != 0:
                raise KafkaAdminError(f"Kafka refused an ACL (error {code}): {message}")

    async def acls_of(self, username: str) -> set[Acl]:
        """The ALLOW ACLs on topics and groups that name ``username``."""
        return await self._describe(f"User:{username}")

    async def all_acls(self) -> set[Acl]:
        """Every ALLOW ACL on topics and groups, of every principal."""
        return await self._describe(None)

    async def _describe(self, principal: str | None) -> set[Acl]:
        request = _Prepared(DescribeAclsRequest_v1, _ANY, None, _ANY, principal, None, _ANY, _ANY)
        response = await self._send(request)
        if response.error_code != 0:
            raise KafkaAdminError(f"Kafka refused to list ACLs (error {response.error_code}): {response.error_message}")
        resources = {code: name for name, code in _RESOURCE.items()}
        operations = {code: name for name, code in _OPERATION.items()}
        patterns = {code: name for name, code in _PATTERN.items()}
        found: set[Acl] = set()
        for resource_type, name, pattern, rules in response.resources:
            for rule_principal, _host, operation, permission in rules:
                if resource_type in resources and operation in operations and permission == _ALLOW:
                    user = str(rule_principal).removeprefix("User:")
                    found.add(Acl(user, resources[resource_type], name, operations[operation], patterns[pattern]))  # type: ignore[arg-type]
        return found

    async def delete_acls(self, acls: set[Acl]) -> None:
        if not acls:
            return
        response = await self._send(_Prepared(DeleteAclsRequest_v1, [acl.creation() for acl in sorted(acls)]))
        for code, message, _matching in response.filter_responses:
            if code != 0:
                raise KafkaAdminError(f"Kafka refused to delete an ACL (error {code}): {message}")

    async def converge(self, username: str, password: str, wanted: set[Acl]) -> None:
        """Make ``username`` authenticate with ``password`` and hold exactly the ACLs ``wanted`` (idempotent)."""
        await self.upsert_user(username, password)
        await self.create_acls(wanted)
        await self.delete_acls(await self.acls_of(username) - wanted)

    async def delete_all_acls_of(self, username: str) -> None:
        """Every ACL that names ``username``, on any resource."""
        request = _Prepared(DeleteAclsRequest_v1, [(_ANY, None, _ANY, f"User:{username}", None, _ANY, _ANY)])
        response = await self._send(request)
        for code, message, _matching in response.filter_responses:
            if code != 0:
                raise KafkaAdminError(f"Kafka refused to delete ACLs (error {code}): {message}")


async def provision(settings: Settings, registry: tuple[ServiceSpec, ...] = REGISTRY) -> None:
    """Make the broker's principals and ACLs those of the registry: every component's SCRAM credential (its
    derived password), the ACLs of :func:`spec_acls`, and none other of a component principal. Idempotent."""
    async with KafkaAdmin(settings) as admin:
        for spec in registry:
            await admin.converge(*credentials(settings, spec.name), spec_acls(spec))
