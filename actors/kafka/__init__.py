"""Kafka plumbing shared by strata's processes: who they are to Kafka, probes, topics, ACLs, lag, dead letters."""

from strata.actors.kafka._acls import (
    Acl,
    KafkaAdmin,
    KafkaAdminError,
    component_acls,
    group_prefix,
    provision,
    reader_acls,
    spec_acls,
)
from strata.actors.kafka._dlq import (
    DeadLetter,
    OriginUnreadable,
    RefusedLetter,
    ReplayReport,
    dead_letter_headers,
    group_topics,
    list_dead_letters,
    replay_dead_letters,
    replay_group,
)
from strata.actors.kafka._lag import consumer_group_lag, partitions_of
from strata.actors.kafka._probe import kafka_refused_credentials, kafka_unavailable_reason
from strata.actors.kafka._security import (
    ADMIN,
    BROKER,
    PRINCIPAL_PREFIX,
    KafkaCredentialsMissing,
    client_options,
    credentials,
    principal_name,
    principal_password,
)
from strata.actors.kafka._stop import stop_quietly
from strata.actors.kafka._topics import dlq_topic, ensure_topics, topic_config

__all__ = [
    "ADMIN",
    "BROKER",
    "PRINCIPAL_PREFIX",
    "Acl",
    "DeadLetter",
    "KafkaAdmin",
    "KafkaAdminError",
    "KafkaCredentialsMissing",
    "OriginUnreadable",
    "RefusedLetter",
    "ReplayReport",
    "client_options",
    "component_acls",
    "consumer_group_lag",
    "credentials",
    "dead_letter_headers",
    "dlq_topic",
    "ensure_topics",
    "group_prefix",
    "group_topics",
    "kafka_refused_credentials",
    "kafka_unavailable_reason",
    "list_dead_letters",
    "partitions_of",
    "principal_name",
    "principal_password",
    "provision",
    "reader_acls",
    "replay_dead_letters",
    "replay_group",
    "spec_acls",
    "stop_quietly",
    "topic_config",
]
