"""PgBouncer saturating, end to end: the reserve pool taken and a server connection stuck in
its check, each firing its alert in a real Prometheus with the shipped rules."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest
from credentials import MONITOR_PASSWORD, MONITOR_USER
from exporter_process import ExporterProcess
from pgbouncer_support import WaitingClient, bouncer_config
from tests_support import wait_firing

from alerts.generate import render, write_rules
from alerts.thresholds import load_thresholds
from scripts.testservers.pgbouncer import PgBouncerServer
from scripts.testservers.postgres import PostgresServer
from scripts.testservers.prometheus import PrometheusServer


class HeldTransactions:
    """`n` clients of the database behind PgBouncer, each inside a transaction (so each holds
    a server connection in transaction pooling) until the block ends."""

    def __init__(self, bouncer: PgBouncerServer, n: int) -> None:
        self.dsn = bouncer.dsn(MONITOR_USER, MONITOR_PASSWORD, "postgres")
        self.release = threading.Event()
        self.threads = [threading.Thread(target=self._hold, daemon=True) for _ in range(n)]

    def _hold(self) -> None:
        with psycopg.connect(self.dsn, prepare_threshold=None, connect_timeout=10) as conn:
            conn.execute("SELECT 1")
            self.release.wait(60)
            conn.rollback()

    def __enter__(self) -> HeldTransactions:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        for thread in self.threads:
            thread.join(30)


@pytest.mark.slow
def test_reserve_pool_use_and_servers_stuck_testing_fire_their_alerts(workdir: Path) -> None:
    """A pool of 2 with a reserve of 2: four transactions at once take the reserve. Then a
    hung server: PgBouncer checks an idle server connection before handing it out
    (server_check_delay 0) and the check hangs in the tested state. Both alerts fire in a
    real Prometheus with the shipped rules (short `for:`)."""
    overrides = {
        "alerts": {
            "ResiliencePgbouncerReservePoolInUse": {"for": "1s"},
            "ResiliencePgbouncerServersStuckTesting": {"for": "1s"},
        }
    }
    rule_files = write_rules(workdir / "rules", render(load_thresholds(overrides=overrides)))
    pool = {"target": "bouncer", "database": "postgres", "user": MONITOR_USER}
    with PostgresServer() as pg:
        pg.create_role(MONITOR_USER, MONITOR_PASSWORD)
        with (
            PgBouncerServer(
                pg,
                users=[(MONITOR_USER, MONITOR_PASSWORD)],
                pool_size=2,
                reserve_pool_size=2,
                reserve_pool_timeout=0.5,
                server_check_delay=0,
            ) as bouncer,
            ExporterProcess(
                workdir, config=bouncer_config(bouncer), env={"PGB_PW": MONITOR_PASSWORD}
            ) as exp,
            PrometheusServer(
                scrape={"resilience-exporter": [f"127.0.0.1:{exp.port}"]}, rule_files=rule_files
            ) as prometheus,
        ):
            with HeldTransactions(bouncer, 4):
                m = exp.wait_for(
                    "four server connections for a pool of two",
                    lambda e: sum(e.series("resilience_pgbouncer_servers", **pool).values()) == 4,
                    timeout=30,
                )
                db = {"target": "bouncer", "database": "postgres"}
                assert m.value("resilience_pgbouncer_pool_size", **db) == 2
                assert m.value("resilience_pgbouncer_reserve_pool_size", **db) == 2
                wait_firing(
                    prometheus,
                    "ResiliencePgbouncerReservePoolInUse",
                    timeout=60,
                    database="postgres",
                )
                (reserve,) = prometheus.query(
                    'pool:resilience_pgbouncer_servers_beyond_pool_size:sum{database="postgres"}'
                )
                assert reserve["value"][1] == "2"

            pg.freeze()
            try:
                with WaitingClient(bouncer):
                    exp.wait_for(
                        "a server connection stuck in the tested state",
                        lambda e: (
                            (e.value("resilience_pgbouncer_servers", **pool, state="tested") or 0)
                            >= 1
                        ),
                        timeout=30,
                    )
                    wait_firing(
                        prometheus,
                        "ResiliencePgbouncerServersStuckTesting",
                        timeout=60,
                        database="postgres",
                    )
                    pg.thaw()  # before the client is joined: its query then finishes
            finally:
                pg.thaw()
