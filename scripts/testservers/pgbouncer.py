"""A throwaway PgBouncer on a free loopback port in front of a `PostgresServer`, run as the
`postgres` user (PgBouncer refuses root) in a temporary directory that user owns."""

from __future__ import annotations

import signal
from collections.abc import Sequence

import psycopg

from scripts.testservers.base import (
    ManagedServer,
    ServerProcess,
    chown_tree,
    free_port,
    owned_tempdir,
    require_binary,
    service_user,
)
from scripts.testservers.postgres import PostgresServer

PGBOUNCER = "/usr/sbin/pgbouncer"


def _userlist_line(user: str, password: str) -> str:
    return '"{}" "{}"'.format(user.replace('"', '""'), password.replace('"', '""'))


class PgBouncerServer(ManagedServer):
    """`with PgBouncerServer(pg, users=[(name, password)], databases=[...]) as b:`.

    Every user in `users` may log in (SCRAM) and is an admin of the console; PgBouncer logs in
    to PostgreSQL with the same name and password, so each must also be a PostgreSQL role.
    Connections to a database wait at most `query_wait_timeout` seconds for a server; after
    `reserve_pool_timeout` seconds of waiting a pool may open `reserve_pool_size` more; an
    idle server connection unused for `server_check_delay` seconds (0: always) is checked
    before it is handed out.
    """

    stop_signal = signal.SIGINT  # safe shutdown

    def __init__(
        self,
        postgres: PostgresServer,
        *,
        users: Sequence[tuple[str, str]],
        databases: Sequence[str] = ("postgres",),
        pool_size: int = 5,
        max_client_conn: int = 50,
        query_wait_timeout: int = 120,
        reserve_pool_size: int = 0,
        reserve_pool_timeout: float = 5.0,
        server_check_delay: float = 30.0,
    ) -> None:
        self.binary = require_binary(PGBOUNCER, "pgbouncer")
        self.user = service_user("postgres")
        self.base = owned_tempdir("resilience-pgbouncer-", self.user)
        self.port = free_port()
        self.postgres = postgres
        self.users = list(users)
        self.pool_size = pool_size
        self.max_client_conn = max_client_conn
        (self.base / "userlist.txt").write_text(
            "".join(_userlist_line(u, p) + "\n" for u, p in self.users)
        )
        admins = ",".join(u for u, _ in self.users)
        dbs = "".join(
            f"{db} = host=127.0.0.1 port={postgres.port} dbname={db}\n" for db in databases
        )
        (self.base / "pgbouncer.ini").write_text(
            f"[databases]\n{dbs}\n[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\n"
            f"unix_socket_dir = {self.base}\n"
            "auth_type = scram-sha-256\n"
            f"auth_file = {self.base / 'userlist.txt'}\n"
            f"admin_users = {admins}\nstats_users = {admins}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {pool_size}\nmax_client_conn = {max_client_conn}\n"
            f"query_wait_timeout = {query_wait_timeout}\n"
            f"reserve_pool_size = {reserve_pool_size}\n"
            f"reserve_pool_timeout = {reserve_pool_timeout}\n"
            f"server_check_delay = {server_check_delay}\n"
            # Retry the server soon after a failed login, so recovery shows quickly.
            "server_login_retry = 1\n"
            "ignore_startup_parameters = application_name,extra_float_digits,options\n"
        )
        chown_tree(self.base, self.user)
        self.process = ServerProcess(
            "pgbouncer",
            [self.binary, str(self.base / "pgbouncer.ini")],
            log_path=self.base / "pgbouncer.log",
            user=self.user,
            cwd=self.base,
        )

    def dsn(self, user: str, password: str | None = None, dbname: str = "pgbouncer") -> str:
        auth = f"{user}:{password}" if password else user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{dbname}?sslmode=disable"

    def admin_connect(self) -> psycopg.Connection[tuple[object, ...]]:
        user, password = self.users[0]
        return psycopg.connect(
            self.dsn(user, password), autocommit=True, prepare_threshold=None, connect_timeout=5
        )

    def answering(self) -> bool:
        try:
            with self.admin_connect() as conn:
                conn.execute("SHOW VERSION")
                return True
        except psycopg.OperationalError:
            return False
