"""What the PgBouncer tests share: the exporter's config for a PgBouncer target, and a client
left waiting for a server connection."""

from __future__ import annotations

import threading

import psycopg
from credentials import MONITOR_PASSWORD, MONITOR_USER

from scripts.testservers.pgbouncer import PgBouncerServer


def bouncer_config(
    bouncer: PgBouncerServer, *, name: str = "bouncer", password: str = "${PGB_PW}"
) -> str:
    return f"""
defaults: {{interval: 2s, timeout: 2s}}
targets:
  - name: {name}
    kind: pgbouncer
    dsn: postgresql://{MONITOR_USER}@127.0.0.1:{bouncer.port}/pgbouncer
    password: {password}
    check_databases: [postgres]
    labels: {{team: platform}}
host: {{enabled: false}}
"""


class WaitingClient:
    """A client of the database behind PgBouncer, running `SELECT 1` until told to stop: while
    the database is down, PgBouncer holds it waiting for a server connection."""

    def __init__(self, bouncer: PgBouncerServer) -> None:
        self.dsn = bouncer.dsn(MONITOR_USER, MONITOR_PASSWORD, "postgres")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                with psycopg.connect(
                    self.dsn, autocommit=True, prepare_threshold=None, connect_timeout=5
                ) as conn:
                    conn.execute("SELECT 1")
            except psycopg.Error:
                pass
            self.stop.wait(0.2)

    def __enter__(self) -> WaitingClient:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)
