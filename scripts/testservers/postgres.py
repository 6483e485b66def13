"""A throwaway PostgreSQL cluster on a free loopback port, run as the `postgres` user."""

from __future__ import annotations

import glob
import signal
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from scripts.testservers.base import (
    ManagedServer,
    ServerError,
    ServerProcess,
    chown_tree,
    free_port,
    owned_tempdir,
    run_as,
    service_user,
)

SUPERUSER = "postgres"
SUPERUSER_PASSWORD = "harness-superuser-pw"


def bin_dir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[4]))
    if not candidates:
        raise ServerError("PostgreSQL not found: apt-get install postgresql")
    return Path(candidates[-1])


class PostgresServer(ManagedServer):
    """`with PostgresServer() as pg:` gives a running cluster that is removed on exit.

    Connections are logged (`log_connections`), so tests can count the exporter's attempts.
    """

    stop_signal = signal.SIGINT  # fast shutdown: sessions are ended, the port closes
    remove_signal = signal.SIGQUIT  # immediate shutdown
    start_timeout = 30.0
    tempdir_prefix = "resilience-pg-"

    def __init__(self, *, port: int | None = None, max_connections: int = 100) -> None:
        self.user = service_user("postgres")
        self.base = owned_tempdir(self.tempdir_prefix, self.user)
        self.data = self.base / "data"
        self.sockets = self.base / "sockets"
        self.port = port or free_port()
        self.max_connections = max_connections
        self._bin = bin_dir()
        self._init_cluster()
        self.process = ServerProcess(
            "postgres",
            [str(self._bin / "postgres"), "-D", str(self.data)],
            log_path=self.base / "postgres.log",
            user=self.user,
        )

    def _init_cluster(self) -> None:
        pwfile = self.base / "pwfile"
        pwfile.write_text(SUPERUSER_PASSWORD + "\n")
        chown_tree(self.base, self.user)
        run_as(
            [
                str(self._bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                f"--pwfile={pwfile}",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            self.user,
        )
        pwfile.unlink()
        self._configure()

    def _configure(self, extra: str = "") -> None:
        """Settings appended to postgresql.conf: later lines win over a copied primary's."""
        self.sockets.mkdir()
        conf = self.data / "postgresql.conf"
        with conf.open("a") as f:
            f.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.sockets}'\n"
                f"max_connections = {self.max_connections}\n"
                "superuser_reserved_connections = 3\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "shared_buffers = 16MB\nlog_connections = on\n"
                "log_line_prefix = '%m [%p] %u@%d %a '\n" + extra
            )
        chown_tree(self.base, self.user)

    # --- lifecycle -----------------------------------------------------------------------
    def answering(self) -> bool:
        try:
            with psycopg.connect(self.admin_dsn(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    # --- access --------------------------------------------------------------------------
    def dsn(self, user: str, password: str | None = None, dbname: str = "postgres") -> str:
        auth = f"{user}:{password}" if password else user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{dbname}?sslmode=disable"

    def admin_dsn(self) -> str:
        return self.dsn(SUPERUSER, SUPERUSER_PASSWORD)

    def execute(self, query: str | sql.Composed | sql.SQL) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.admin_dsn(), autocommit=True) as conn:
            cur = conn.execute(query)
            return cur.fetchall() if cur.description else []

    def create_role(self, name: str, password: str, *, monitor: bool = True) -> None:
        self.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(password)
            )
        )
        if monitor:
            self.execute(sql.SQL("GRANT pg_monitor TO {}").format(sql.Identifier(name)))

    def create_database(self, name: str) -> None:
        self.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def backends(self, application_name: str) -> int:
        rows = self.execute(
            sql.SQL("SELECT count(*) FROM pg_stat_activity WHERE application_name = {}").format(
                sql.Literal(application_name)
            )
        )
        return int(rows[0][0])

    def connections_received(self) -> int:
        """Connection attempts the server has logged since it was created."""
        return self.process.log_text().count("connection received:")


class PostgresStandby(PostgresServer):
    """A streaming standby of `primary` on a port of its own, made as an operator would:
    `pg_basebackup -R -X stream -C -S <slot>` (a physical replication slot on the primary,
    `primary_conninfo` through the primary's socket). Its walreceiver's `application_name`
    is `name` (through `cluster_name`). Roles and data come from the primary.

    `pause_replay()`/`resume_replay()` make replay lag on demand; `stop()` leaves the slot
    on the primary inactive, retaining WAL.
    """

    tempdir_prefix = "resilience-pg-standby-"

    def __init__(
        self, primary: PostgresServer, *, name: str = "standby1", slot: str = "standby1_slot"
    ) -> None:
        self.primary = primary
        self.name = name
        self.slot = slot
        super().__init__(max_connections=primary.max_connections)

    def _init_cluster(self) -> None:
        chown_tree(self.base, self.user)
        run_as(
            [
                str(self._bin / "pg_basebackup"),
                "-h", str(self.primary.sockets),
                "-p", str(self.primary.port),
                "-U", SUPERUSER,
                "-D", str(self.data),
                "-R", "-X", "stream", "-C", "-S", self.slot,
                "--no-sync",
            ],
            self.user,
        )  # fmt: skip
        self._configure(f"cluster_name = '{self.name}'\n")

    def pause_replay(self) -> None:
        self.execute("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        self.execute("SELECT pg_wal_replay_resume()")
