"""An embedded Apache Kafka 4 broker in KRaft mode: one JVM as broker and controller, on 127.0.0.1.

The jars come from Maven Central through ``cluster/kafka/pom.xml`` and are
copied once into a cache keyed by the pom's hash (Maven keeps its own in
``~/.m2``). The storage under ``<data_dir>/kafka/data`` is formatted once
(``StorageTool format --standalone``); logs and committed offsets survive
restarts.

A data dir whose credentials Kafka 4.1 drops when it starts (KAFKA-20774, see
:func:`lost_at_start`) is repaired by starting the broker once with
:class:`RepairListener`: a one-off loopback listener where a random password,
checked by the broker's own configuration, admits a super user.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from strata.actors.kafka import ADMIN, BROKER, principal_name
from strata.cluster._errors import StartupError, ToolMissing
from strata.cluster._state import Proc, server_env, spawn_detached, wait_for_port

_POM = "pom.xml"
_PASSWORD = re.compile(r"[A-Za-z0-9._~-]{16,}")
_LOG4J = "log4j2.properties"
_METADATA_LOG = "__cluster_metadata-0"
_SCRAM_SHA_512 = 2  # the mechanism's type in Kafka's records; strata's principals use no other
_PAYLOAD = re.compile(r"payload: (\{.*\})\s*$")

REPAIR_PRINCIPAL = "strata-repair"
"""The super user of the one-off repair listener (PLAIN, password in the broker's configuration only)."""


@dataclass(frozen=True)
class RepairListener:
    """A one-off listener for repairing credentials: ``127.0.0.1:port``, SASL PLAIN, where ``strata-repair``
    logs in with ``password`` and is a super user.

    PLAIN is checked against the broker's configuration, not the metadata log, so it admits a client while the
    log's SCRAM credentials are lost. It binds loopback only, its password is random for each repair (and must be
    one, :func:`secrets.token_urlsafe`), and it exists only in the configuration of the broker the repair starts:
    the next normal start rewrites the configuration without it.
    """

    port: int
    password: str

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"


def scram_history(dump: Iterable[str]) -> list[tuple[str, bool]]:
    """The SCRAM-SHA-512 records of a metadata log, in order, from ``DumpLogSegments --cluster-metadata-decoder``
    output: ``(name, removed)`` for each upsertion (``False``) or removal (``True``). Nothing else is kept: the other
    fields hold salted keys."""
    history: list[tuple[str, bool]] = []
    for line in dump:
        found = _PAYLOAD.search(line)
        if found is None:
            continue
        try:
            record = json.loads(found.group(1))
        except ValueError:
            continue
        kind = record.get("type") if isinstance(record, dict) else None
        if kind not in ("USER_SCRAM_CREDENTIAL_RECORD", "REMOVE_USER_SCRAM_CREDENTIAL_RECORD"):
            continue
        data = record.get("data") or {}
        if data.get("mechanism") == _SCRAM_SHA_512 and isinstance(data.get("name"), str):
            history.append((data["name"], kind.startswith("REMOVE")))
    return history


def trailing_removals(history: Iterable[tuple[str, bool]]) -> list[str]:
    """The names whose last record in ``history`` is a removal, in the order of those removals."""
    last: dict[str, bool] = {}
    for name, removed in history:
        last.pop(name, None)  # re-inserted: the dict keeps the order of each name's last record
        last[name] = removed
    return [name for name, removed in last.items() if removed]


def java_string_hash(text: str) -> int:
    """``String.hashCode()`` of Java, as an unsigned 32-bit int."""
    units = text.encode("utf-16-be")
    value = 0
    for i in range(0, len(units), 2):
        value = (31 * value + int.from_bytes(units[i : i + 2], "big")) & 0xFFFFFFFF
    return value


def java_hashmap_order(keys: list[str]) -> list[str]:
    """The iteration order of a ``java.util.HashMap<String, ?>`` into which ``keys`` were put in this order.

    Ascending bucket (the hash spread as ``HashMap.hash`` spreads it, masked by a table that doubles past a 0.75
    load), and insertion order within a bucket. Exact while no bucket holds 8 keys (Java then makes it a tree).
    """
    unique = list(dict.fromkeys(keys))
    capacity = 16
    while len(unique) > capacity * 3 // 4:
        capacity *= 2

    def bucket(key: str) -> int:
        value = java_string_hash(key)
        return (value ^ (value >> 16)) & (capacity - 1)

    return sorted(unique, key=lambda key: (bucket(key), unique.index(key)))


def lost_at_start(history: list[tuple[str, bool]]) -> bool:
    """Whether Kafka 4.1 (up to 4.4.0 at least, KAFKA-20774) loses every SCRAM-SHA-512 credential when it rebuilds
    them from a metadata log holding ``history`` (from its start, no snapshot).

    ``ScramDelta.apply()`` walks the names of the replayed records in :func:`java_hashmap_order`, starting from an
    empty map; a name whose last record is a removal, met while that map is still empty, removes the mechanism's
    whole map, and every credential put after it goes into a map that is no longer there.
    """
    last = dict.fromkeys(trailing_removals(history), True)
    for name in java_hashmap_order([name for name, _ in history]):
        return name in last
    return False


def find_java() -> Path:
    """The ``java`` of ``JAVA_HOME`` or of ``PATH``; :class:`ToolMissing` if neither has one."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return Path(java_home) / "bin" / "java"
    found = shutil.which("java")
    if found is None:
        raise ToolMissing(
            "no Java runtime found for the embedded Kafka: install a JDK 17 or newer (e.g. apt-get install"
            " openjdk-17-jdk-headless) or set JAVA_HOME, or set STRATA_KAFKA_BOOTSTRAP_SERVERS to use your own Kafka"
        )
    return Path(found)


def find_maven() -> Path:
    found = shutil.which("mvn")
    if found is None:
        raise ToolMissing(
            "Maven (mvn) is needed once to fetch the embedded Kafka's jars: install it (e.g. apt-get install maven),"
            " or set STRATA_KAFKA_BOOTSTRAP_SERVERS to use your own Kafka"
        )
    return Path(found)


def _resource(name: str) -> Path:
    return Path(str(resources.files("strata.cluster") / "kafka" / name))


def jars_dir(cache_dir: Path) -> Path:
    digest = hashlib.sha256(_resource(_POM).read_bytes()).hexdigest()[:12]
    return cache_dir / f"kafka-jars-{digest}"


def jars_resolved(cache_dir: Path) -> bool:
    return (jars_dir(cache_dir) / ".complete").exists()


def resolve_jars(cache_dir: Path) -> Path:
    """Copy the broker's jars into the cache (once) and return their directory."""
    target = jars_dir(cache_dir)
    if (target / ".complete").exists():
        return target
    mvn = find_maven()
    staging = target.with_name(target.name + f".partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    result = subprocess.run(
        [
            str(mvn),
            "-q",
            "-B",
            "-f",
            str(_resource(_POM)),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        lines = [ln for ln in (result.stdout + result.stderr).splitlines() if "ERROR" in ln]
        raise StartupError(
            f"Maven could not fetch the Kafka jars: {lines[0] if lines else 'exit ' + str(result.returncode)}"
        )
    (staging / ".complete").touch()
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


class EmbeddedKafka:
    """Format, start and stop one KRaft broker under ``home``.

    Clients authenticate with SASL SCRAM-SHA-512 on the client listener, and Kafka's ``StandardAuthorizer``
    refuses whatever no ACL allows. ``strata-broker`` (the broker's own inter-broker and controller traffic,
    PLAIN on the controller listener, where KRaft has no SCRAM) and ``strata-admin`` are super users; their
    credentials are written into the storage when it is formatted. The component principals and their ACLs
    come later, through the admin API (:func:`strata.actors.kafka.provision`).
    """

    def __init__(
        self,
        home: Path,
        *,
        port: int,
        controller_port: int,
        heap: str,
        cache_dir: Path,
        broker_password: str,
        admin_password: str,
    ) -> None:
        self.home = home.resolve()
        self.data = self.home / "data"
        self.port = port
        self.controller_port = controller_port
        self.heap = heap
        self.cache_dir = cache_dir
        self._broker_password = broker_password
        self._admin_password = admin_password

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def own_credentials(self) -> list[tuple[str, str]]:
        """``(username, password)`` of ``strata-broker`` and ``strata-admin``: what formatting wrote into the
        storage."""
        return [(principal_name(BROKER), self._broker_password), (principal_name(ADMIN), self._admin_password)]

    @property
    def properties_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def _sasl_marker(self) -> Path:
        return self.data / ".strata-sasl"

    def _write_properties(self, repair: RepairListener | None = None) -> None:
        for secret in (self._broker_password, self._admin_password, *([repair.password] if repair else [])):
            if not _PASSWORD.fullmatch(secret):
                # They go into a JAAS line and the format step's argument file, where quotes, commas, brackets and
                # blanks mean syntax.
                raise StartupError(
                    "the embedded Kafka's passwords need 16 or more of letters, digits and . _ ~ -"
                    " (kafka_admin_password)"
                )
        broker, password = principal_name(BROKER), self._broker_password
        plain = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required"
            f' username="{broker}" password="{password}" user_{broker}="{password}";'
        )
        scram = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required"
            f' username="{broker}" password="{password}";'
        )
        listeners = f"CLIENT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
        advertised = f"CLIENT://127.0.0.1:{self.port}"
        protocols = "CONTROLLER:SASL_PLAINTEXT,CLIENT:SASL_PLAINTEXT"
        super_users = f"User:{broker};User:{principal_name(ADMIN)}"
        repairing = ""
        if repair is not None:
            # Advertised too: a client bootstrapping there is told the broker's address on the listener it came by.
            listeners += f",REPAIR://127.0.0.1:{repair.port}"
            advertised += f",REPAIR://127.0.0.1:{repair.port}"
            protocols += ",REPAIR:SASL_PLAINTEXT"
            super_users += f";User:{REPAIR_PRINCIPAL}"
            repairing = (
                "# one-off, for `strata kafka-user repair`: the next normal start writes this file without it\n"
                "listener.name.repair.sasl.enabled.mechanisms=PLAIN\n"
                "listener.name.repair.plain.sasl.jaas.config="
                "org.apache.kafka.common.security.plain.PlainLoginModule required"
                f' user_{REPAIR_PRINCIPAL}="{repair.password}";\n'
            )
        text = (
            "# strata's embedded broker: KRaft, one node, loopback only, SASL and ACLs on every listener\n"
            "process.roles=broker,controller\n"
            "node.id=1\n"
            f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}\n"
            f"listeners={listeners}\n"
            f"advertised.listeners={advertised}\n"
            "controller.listener.names=CONTROLLER\n"
            "inter.broker.listener.name=CLIENT\n"
            f"listener.security.protocol.map={protocols}\n"
            "sasl.mechanism.controller.protocol=PLAIN\n"
            "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512\n"
            "listener.name.controller.sasl.enabled.mechanisms=PLAIN\n"
            f"listener.name.controller.plain.sasl.jaas.config={plain}\n"
            "listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-512\n"
            f"listener.name.client.scram-sha-512.sasl.jaas.config={scram}\n"
            f"{repairing}"
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n"
            "allow.everyone.if.no.acl.found=false\n"
            f"super.users={super_users}\n"
            f"log.dirs={self.data}\n"
            "num.partitions=3\n"
            "offsets.topic.replication.factor=1\n"
            "offsets.topic.num.partitions=10\n"
            "transaction.state.log.replication.factor=1\n"
            "transaction.state.log.min.isr=1\n"
            "share.coordinator.state.topic.replication.factor=1\n"
            "share.coordinator.state.topic.min.isr=1\n"
            "group.initial.rebalance.delay.ms=0\n"
            "auto.create.topics.enable=false\n"
            "log.retention.hours=168\n"
            "num.network.threads=2\n"
            "num.io.threads=2\n"
            "background.threads=2\n"
        )
        # The file holds the broker's password: readable by its owner only, from its first byte.
        fd = os.open(self.properties_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        self.properties_file.chmod(0o600)

    def _java(self, jars: Path, *args: str, heap: str = "256m") -> list[str]:
        return [
            str(find_java()),
            f"-Xmx{heap}",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.home}",
            f"-Dlog4j2.configurationFile={_resource(_LOG4J)}",
            "-cp",
            f"{jars}/*",
            *args,
        ]

    def prepare(self, repair: RepairListener | None = None) -> Path:
        """Resolve the jars, write the configuration (with ``repair``'s listener if given) and format the storage
        once; returns the jars' directory."""
        jars = resolve_jars(self.cache_dir)
        self.home.mkdir(parents=True, exist_ok=True)
        self._write_properties(repair)
        if (self.data / "meta.properties").exists() and not self._sasl_marker.exists():
            raise StartupError(
                f"the Kafka storage under {self.data} was formatted before strata's broker required authentication,"
                " so it holds no credentials: stop strata, remove that directory (its events are replayed from"
                " nowhere; the services' outboxes keep only unsent rows) and run `strata up` again"
            )
        if not (self.data / "meta.properties").exists():
            self._format(jars)
            self._sasl_marker.touch()
        return jars

    @property
    def format_args_file(self) -> Path:
        """Where the format step's arguments wait for the JVM (0600, removed once it has run)."""
        return self.home / "format.args"

    def format_arguments(self, cluster_id: str) -> list[str]:
        """``StorageTool format``'s main class and arguments, the SCRAM credentials of ``strata-broker`` and
        ``strata-admin`` among them: what the JVM reads from :attr:`format_args_file`, never from its argv."""
        return [
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            f"--cluster-id={cluster_id}",
            "-c",
            str(self.properties_file),
            "--add-scram",
            f"SCRAM-SHA-512=[name={principal_name(BROKER)},password={self._broker_password}]",
            "--add-scram",
            f"SCRAM-SHA-512=[name={principal_name(ADMIN)},password={self._admin_password}]",
        ]

    def format_command(self, jars: Path) -> list[str]:
        """The format step's command line: the JVM reads its main class and arguments from an argument file
        (``java @file``, expanded inside the launcher), so no password is on a command line that ``ps`` shows."""
        return self._java(jars, f"@{self.format_args_file}")

    def _format(self, jars: Path) -> None:
        # Kafka's cluster id: a base64url UUID. It may start with "-", so it is passed as --cluster-id=<id>.
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # StorageTool takes SCRAM credentials only as --add-scram arguments. An argument file keeps them off argv; the
        # passwords are of letters, digits and . _ ~ - (checked above), so no quoting is needed in it.
        args_file = self.format_args_file
        args_file.unlink(missing_ok=True)
        fd = os.open(args_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write("".join(f"{argument}\n" for argument in self.format_arguments(cluster_id)))
            result = subprocess.run(
                self.format_command(jars),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                env=server_env(),
            )
        finally:
            args_file.unlink(missing_ok=True)
        if result.returncode != 0:
            output = (result.stderr or result.stdout).strip()[-300:]
            for secret in (self._broker_password, self._admin_password):
                output = output.replace(secret, "***")
            raise StartupError(f"formatting the Kafka storage failed: {output}")

    def start(self, timeout: float = 90.0, *, repair: RepairListener | None = None) -> Proc:
        """Start the broker detached (its own session) and wait until it listens; returns its process.

        With ``repair``, it also listens there (:class:`RepairListener`); without, the configuration it starts
        with has no such listener."""
        jars = self.prepare(repair)
        proc = spawn_detached(
            self._java(jars, "kafka.Kafka", str(self.properties_file), heap=self.heap),
            self.home / "kafka.out",
            self.home,
        )
        if not wait_for_port("127.0.0.1", self.port, timeout):
            proc.kill()
            raise StartupError(
                f"Kafka did not listen on {self.bootstrap_servers} within {timeout:.0f}s (see {self.home}/server.log)"
            )
        if proc.poll() is not None:
            raise StartupError(f"Kafka exited with {proc.returncode} (see {self.home}/kafka.out)")
        return Proc.of(proc.pid)

    def scram_history(self) -> list[tuple[str, bool]]:
        """The SCRAM-SHA-512 records of the storage's metadata log, in order (:func:`scram_history`).

        Read with Kafka's ``DumpLogSegments`` from the segment files, so the broker may be stopped or running. Every
        segment there counts, also one a snapshot has made redundant: what the result is used for (finding removals
        to overwrite) is harmless for a name that needs none.
        """
        segments = sorted((self.data / _METADATA_LOG).glob("*.log"))
        if not segments:
            return []
        jars = resolve_jars(self.cache_dir)
        result = subprocess.run(
            self._java(
                jars,
                "kafka.tools.DumpLogSegments",
                "--cluster-metadata-decoder",
                "--files",
                ",".join(str(segment) for segment in segments),
            ),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=server_env(),
        )
        if result.returncode != 0:
            # Only the last line of stderr: stdout holds salted keys.
            raise StartupError(f"reading Kafka's metadata log failed: {result.stderr.strip()[-300:]}")
        return scram_history(result.stdout.splitlines())
