"""The Kafka access policy, as data: who may write and read which topic, derived from the registry, and how
each process authenticates."""

from __future__ import annotations

import uuid

import pytest
from pydantic import SecretStr

from strata.actors.kafka import (
    Acl,
    KafkaCredentialsMissing,
    client_options,
    component_acls,
    dlq_topic,
    principal_password,
    replay_group,
    spec_acls,
)
from strata.cluster._cli_kafka import BadKafkaUser, reader_policy
from strata.cluster._components import event_topics
from strata.schemas import REGISTRY, Settings, consumer_groups, service_spec
from strata.schemas.events import (
    ITEM_CREATED,
    USER_ROLES_CHANGED,
    ForeignEvent,
    ItemCreated,
    UserRolesChanged,
    check_provenance,
    new_event,
)


def _writes(acls: set[Acl]) -> set[str]:
    return {acl.name for acl in acls if acl.resource == "topic" and acl.operation == "write"}


def _reads(acls: set[Acl]) -> set[str]:
    return {acl.name for acl in acls if acl.resource == "topic" and acl.operation == "read"}


@pytest.mark.parametrize("spec", REGISTRY, ids=lambda spec: spec.name)
def test_a_component_writes_only_its_own_topics_and_its_groups_dead_letters(spec: object) -> None:
    acls = spec_acls(spec)  # type: ignore[arg-type]
    name = spec.name  # type: ignore[attr-defined]
    for topic in _writes(acls):
        assert topic.startswith(f"strata.{name}.") or topic.startswith(f"strata.dlq.{name}"), topic
    assert {acl.principal for acl in acls} <= {f"strata-{name}"}
    assert all(acl.pattern == "literal" for acl in acls)  # no principal of strata's gets a wildcard


def test_only_users_writes_the_users_topic_and_only_auth_the_auth_topic() -> None:
    writers: dict[str, set[str]] = {}
    for acl in component_acls():
        if acl.operation == "write":
            writers.setdefault(acl.name, set()).add(acl.principal)
    assert writers["strata.users.user.v1"] == {"strata-users"}
    assert writers["strata.auth.account.v1"] == {"strata-auth"}


def test_consumers_read_only_their_groups_topics_with_only_their_groups() -> None:
    auth = spec_acls(service_spec("auth"))
    assert _reads(auth) == {"strata.users.user.v1"}
    assert {acl.name for acl in auth if acl.resource == "group"} == {"auth"}
    assert dlq_topic("auth") in _writes(auth)
    audit = spec_acls(service_spec("audit"))
    assert _writes(audit) == {dlq_topic("audit")}  # the audit log writes no event topic


def test_the_gateway_reads_its_feed_and_writes_nothing() -> None:
    gateway = spec_acls(service_spec("gateway"))
    assert _reads(gateway) == {"strata.auth.account.v1", "strata.users.user.v1"}
    assert _writes(gateway) == set()
    assert not [acl for acl in gateway if acl.resource == "group"]


def test_a_reader_gets_read_on_its_topics_and_groups_named_after_it() -> None:
    acls = reader_policy("billing", ["strata.data.*", "strata.users.user.v1"], event_topics())
    assert acls == {
        Acl("billing", "group", "billing.", "read", "prefixed"),
        Acl("billing", "topic", "strata.data.", "read", "prefixed"),
        Acl("billing", "topic", "strata.users.user.v1", "read"),
    }


@pytest.mark.parametrize(
    ("name", "topics", "fragment"),
    [
        ("strata-users", ["strata.data.*"], "belong to strata"),
        ("strata.dlq-replay", ["strata.data.*"], "belong to strata"),
        ("ab", ["strata.data.*"], "3-64"),
        ("Billing", ["strata.data.*"], "3-64"),
        ("billing", [], "at least one"),
        ("billing", ["*"], "names no strata topic"),
        ("billing", ["strata.nope.v1"], "names no strata topic"),
        ("billing", ["__consumer_offsets"], "names no strata topic"),
    ],
)
def test_a_reader_policy_refuses_what_it_may_not_have(name: str, topics: list[str], fragment: str) -> None:
    with pytest.raises(BadKafkaUser, match=fragment):
        reader_policy(name, topics, event_topics())


def _sasl(**overrides: object) -> Settings:
    base: dict[str, object] = {
        "kafka_bootstrap_servers": "127.0.0.1:9092",
        "kafka_security_protocol": "SASL_PLAINTEXT",
        "secret_key": SecretStr("s" * 32),
    }
    return Settings(**{**base, **overrides})  # type: ignore[arg-type]


def test_each_component_authenticates_as_itself_with_a_derived_password() -> None:
    settings = _sasl()
    options = client_options(settings, "users")
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "strata-users"
    assert options["sasl_plain_password"] == principal_password("s" * 32, "users")
    assert principal_password("s" * 32, "users") != principal_password("s" * 32, "auth")
    assert principal_password("t" * 32, "users") != principal_password("s" * 32, "users")


def test_a_process_without_the_admin_password_cannot_act_as_admin() -> None:
    with pytest.raises(KafkaCredentialsMissing, match="admin"):
        client_options(_sasl(), "admin")
    admin = client_options(_sasl(kafka_admin_password=SecretStr("a" * 24)), "admin")
    assert (admin["sasl_plain_username"], admin["sasl_plain_password"]) == ("strata-admin", "a" * 24)


def test_an_external_kafka_principal_is_used_by_every_client_and_tls_verifies() -> None:
    settings = _sasl(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_username="svc",
        kafka_password=SecretStr("pw"),
    )
    for component in ("users", "gateway", "admin"):
        options = client_options(settings, component)
        assert (options["sasl_plain_username"], options["sasl_mechanism"]) == ("svc", "SCRAM-SHA-256")
        assert options["ssl_context"].check_hostname


def test_plaintext_carries_no_credentials() -> None:
    options = client_options(Settings(kafka_bootstrap_servers="k:9092"), "users")
    assert options == {"bootstrap_servers": "k:9092", "security_protocol": "PLAINTEXT"}


def test_username_and_password_come_in_pairs() -> None:
    with pytest.raises(ValueError, match="both kafka_username and kafka_password"):
        _sasl(kafka_username="svc")


def _roles_changed(source: str) -> object:
    user = str(uuid.uuid4())
    event = new_event(
        USER_ROLES_CHANGED, UserRolesChanged(user_id=user, roles=["admin"], perm_version=2), subject="u", key=user
    )
    return event.model_copy(update={"source": source})


def test_an_event_from_its_topics_owner_passes() -> None:
    check_provenance("strata.users.user.v1", _roles_changed("strata/users"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("topic", "source"),
    [
        ("strata.users.user.v1", "strata/data"),  # a forged source
        ("strata.auth.account.v1", "strata/users"),  # a users event on the auth topic
        ("strata.data.collection.v1", "strata/users"),
        ("elsewhere", "strata/users"),
    ],
)
def test_an_event_not_from_its_topics_owner_is_foreign(topic: str, source: str) -> None:
    with pytest.raises(ForeignEvent):
        check_provenance(topic, _roles_changed(source))  # type: ignore[arg-type]


def test_an_event_belongs_on_its_own_services_topics() -> None:
    collection, item_id = str(uuid.uuid4()), str(uuid.uuid4())
    payload = ItemCreated(collection_id=collection, item_id=item_id, version=1)
    item = new_event(ITEM_CREATED, payload, subject=f"collection/{collection}", key=collection)
    check_provenance(ITEM_CREATED.topic, item)
    check_provenance("strata.data.collection.v1", item)
    check_provenance("strata.data.private-test.v1", item)  # a topic outside the catalogue: the service decides
    with pytest.raises(ForeignEvent):
        check_provenance("strata.users.user.v1", item)


@pytest.mark.parametrize("name", ["audi", "aut", "use", "users"])
def test_a_readers_groups_never_include_strata_s_own(name: str) -> None:
    """Groups are ``<name>.*``, not ``<name>*``: a reader named ``audi`` must not join (and starve) group ``audit``."""
    [group] = [acl for acl in reader_policy(name, ["strata.data.*"], event_topics()) if acl.resource == "group"]
    ours = [g.group for _, g in consumer_groups()] + [replay_group(g.group) for _, g in consumer_groups()]
    assert [g for g in ours if g.startswith(group.name)] == []
