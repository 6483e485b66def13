"""Locks, deadlocks, long statements and per-database counters, provoked on a real PostgreSQL
and read through the real exporter, whose role has only `pg_monitor`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from credentials import MONITOR_PASSWORD, MONITOR_USER
from exporter_process import ExporterProcess, Scrape
from psycopg import errors, sql
from psycopg.rows import dict_row

from resilience_exporter.metrics.families import Family, Sample
from resilience_exporter.probes.postgres import replication, stats
from scripts.testservers.postgres import PostgresServer

pytestmark = pytest.mark.slow  # every test here starts a server or the exporter

TARGET = "orders-db"
DEADLINE = 30.0


@pytest.fixture
def exporter(postgres: PostgresServer, workdir: Path) -> Iterator[ExporterProcess]:
    config = f"""
defaults: {{interval: 1s, timeout: 1s}}
host: {{enabled: false}}
targets:
  - name: {TARGET}
    kind: postgres
    dsn: postgresql://{MONITOR_USER}@127.0.0.1:{postgres.port}/postgres
    password: ${{PGPW}}
"""
    with ExporterProcess(workdir, config=config, env={"PGPW": MONITOR_PASSWORD}) as exp:
        exp.wait_for(
            "a probe",
            lambda e: e.value("resilience_up", target=TARGET) == 1,
            timeout=DEADLINE,
        )
        yield exp


@pytest.fixture
def table(postgres: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A table of its own for the test, with rows 1 and 2."""
    name = f"t_{request.node.name[:40]}"
    postgres.execute(
        sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, v int NOT NULL)").format(sql.Identifier(name))
    )
    postgres.execute(sql.SQL("INSERT INTO {} VALUES (1, 0), (2, 0)").format(sql.Identifier(name)))
    yield name
    postgres.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))


def update(table: str, row: int) -> sql.Composed:
    return sql.SQL("UPDATE {} SET v = v + 1 WHERE id = {}").format(
        sql.Identifier(table), sql.Literal(row)
    )


def gauge(name: str, **labels: str) -> Callable[[Scrape], float]:
    def read(e: Scrape) -> float:
        return e.value(name, **labels) or 0.0

    return read


def test_a_held_row_lock_shows_blocked_sessions_and_a_growing_wait(
    postgres: PostgresServer, exporter: ExporterProcess, table: str
) -> None:
    t = {"target": TARGET}
    holder = psycopg.connect(postgres.admin_dsn())  # a transaction left open
    holder.execute(update(table, 1))
    waiter_done = threading.Event()

    def wait_for_the_row() -> None:
        with psycopg.connect(postgres.admin_dsn(), autocommit=True) as waiter:
            waiter.execute(update(table, 1))
        waiter_done.set()

    thread = threading.Thread(target=wait_for_the_row, daemon=True)
    thread.start()
    try:
        wait_age = gauge("resilience_postgres_oldest_lock_wait_seconds", **t)
        first = exporter.wait_for(
            "a session blocked by another",
            lambda e: (
                gauge("resilience_postgres_blocked_sessions", **t)(e) >= 1
                and gauge("resilience_postgres_blocking_sessions", **t)(e) >= 1
                and gauge("resilience_postgres_lock_waiting_sessions", **t)(e) >= 1
                and wait_age(e) > 0
            ),
            timeout=DEADLINE,
        )
        later = exporter.wait_for(
            "the lock wait growing", lambda e: wait_age(e) > wait_age(first) + 1, timeout=DEADLINE
        )
        # The waiting UPDATE is an active statement as old as its wait, or older.
        assert gauge("resilience_postgres_oldest_active_query_seconds", **t)(later) >= (
            wait_age(later) - 1
        )
        # The holder is idle in its transaction meanwhile.
        assert gauge("resilience_postgres_oldest_idle_in_transaction_seconds", **t)(later) > 0
        assert not waiter_done.is_set()
        # Before PostgreSQL 14 the wait is read from the waiting statement's age: that
        # variant of the statement runs here too, as the monitoring role.
        older = probe_samples(postgres, 130000)
        assert value_of(older, stats.OLDEST_LOCK_WAIT) > 0
        assert value_of(older, stats.BLOCKED) >= 1
    finally:
        holder.rollback()
        holder.close()
        thread.join(10)
    assert waiter_done.is_set()
    exporter.wait_for(
        "nobody blocked any more",
        lambda e: (
            gauge("resilience_postgres_blocked_sessions", **t)(e) == 0
            and gauge("resilience_postgres_lock_waiting_sessions", **t)(e) == 0
            and wait_age(e) == 0
        ),
        timeout=DEADLINE,
    )


def test_a_real_deadlock_moves_the_deadlocks_counter(
    postgres: PostgresServer, exporter: ExporterProcess, table: str
) -> None:
    deadlocks = gauge("resilience_postgres_deadlocks_total", target=TARGET, database="postgres")
    before = deadlocks(exporter.scrape())
    first, second = psycopg.connect(postgres.admin_dsn()), psycopg.connect(postgres.admin_dsn())
    detected: list[BaseException] = []

    def run(conn: psycopg.Connection[tuple[object, ...]], row: int) -> None:
        try:
            conn.execute(update(table, row))
        except errors.DeadlockDetected as err:
            detected.append(err)
        finally:
            conn.rollback()

    try:
        first.execute(update(table, 1))
        second.execute(update(table, 2))
        # Each now asks for the row the other holds: after deadlock_timeout (1 s) the
        # server rolls one of them back.
        crossing = threading.Thread(target=run, args=(first, 2), daemon=True)
        crossing.start()
        exporter.wait_for(
            "the first session waiting",
            lambda e: gauge("resilience_postgres_blocked_sessions", target=TARGET)(e) >= 1,
            timeout=DEADLINE,
        )
        run(second, 1)
        crossing.join(10)
    finally:
        first.close()
        second.close()
    assert len(detected) == 1, "exactly one of the two was chosen as the victim"
    exporter.wait_for(
        "the deadlock counted", lambda e: deadlocks(e) >= before + 1, timeout=DEADLINE
    )


def test_a_long_statement_is_seen_without_its_text(
    postgres: PostgresServer, exporter: ExporterProcess
) -> None:
    secret_text = "pg_sleep(30) /* order-of-customer-4711 */"
    conn = psycopg.connect(postgres.admin_dsn(), autocommit=True)
    outcome: list[BaseException] = []

    def sleep() -> None:
        try:
            conn.execute(f"SELECT {secret_text}")
        except errors.QueryCanceled as err:
            outcome.append(err)

    thread = threading.Thread(target=sleep, daemon=True)
    thread.start()
    try:
        age = gauge("resilience_postgres_oldest_active_query_seconds", target=TARGET)
        first = exporter.wait_for("a statement running", lambda e: age(e) > 0.5, timeout=DEADLINE)
        m = exporter.wait_for(
            "its age growing", lambda e: age(e) > age(first) + 1, timeout=DEADLINE
        )
        assert "order-of-customer-4711" not in m.text
        assert "pg_sleep" not in m.text
    finally:
        conn.cancel_safe()
        thread.join(10)
        conn.close()
    assert outcome, "the statement ran until cancelled"


def test_rollbacks_temp_files_and_transaction_id_age_move(
    postgres: PostgresServer, exporter: ExporterProcess
) -> None:
    db = {"target": TARGET, "database": "postgres"}
    rollbacks = gauge("resilience_postgres_rollbacks_total", **db)
    commits = gauge("resilience_postgres_commits_total", **db)
    temp_bytes = gauge("resilience_postgres_temp_bytes_total", **db)
    xid_age = gauge("resilience_postgres_frozen_xid_age", **db)
    before = exporter.scrape()
    assert before.value("resilience_postgres_autovacuum_freeze_max_age", target=TARGET) == 2e8
    assert before.label_values("resilience_postgres_frozen_xid_age", "database") >= {
        "postgres",
        "template0",
        "template1",
    }
    with psycopg.connect(postgres.admin_dsn(), autocommit=True) as conn:
        for _ in range(5):
            with conn.transaction(force_rollback=True):
                conn.execute("SELECT 1")
        # A sort too big for 64 kB of work_mem spills to a temporary file.
        conn.execute("SET work_mem = '64kB'")
        conn.execute(
            "SELECT count(*) FROM "
            "(SELECT g FROM generate_series(1, 100000) AS g ORDER BY g DESC) AS s"
        )
        # A thousand transactions that each take a transaction ID.
        conn.execute(
            "DO $$ BEGIN FOR i IN 1..1000 LOOP PERFORM txid_current(); COMMIT; END LOOP; END $$"
        )
    exporter.wait_for(
        "the counters moved",
        lambda e: (
            rollbacks(e) >= rollbacks(before) + 5
            and commits(e) > commits(before)
            and temp_bytes(e) > temp_bytes(before)
            and xid_age(e) >= xid_age(before) + 1000
        ),
        timeout=DEADLINE,
    )


def probe_samples(postgres: PostgresServer, server_version: int) -> list[Sample]:
    """The probe's statement for `server_version`, run as the monitoring role."""
    with psycopg.connect(postgres.dsn(MONITOR_USER, MONITOR_PASSWORD), autocommit=True) as conn:
        row = conn.cursor(row_factory=dict_row).execute(stats.statement(server_version)).fetchone()
    return stats.samples(TARGET, row)


def value_of(samples: list[Sample], family: Family) -> float:
    (found,) = [s.value for s in samples if s.family is family]
    assert isinstance(found, float | int)
    return float(found)


def test_the_statement_for_older_servers_runs_and_leaves_out_what_they_lack(
    postgres: PostgresServer,
) -> None:
    postgres.execute("SELECT pg_create_physical_replication_slot('older_servers', true)")
    try:
        by_version = {
            v: probe_samples(postgres, v) for v in (100000, 110000, 120000, 130000, 140000, 150000)
        }
    finally:
        postgres.execute("SELECT pg_drop_replication_slot('older_servers')")
    for version, samples in by_version.items():
        families = {s.family for s in samples}
        assert replication.SLOT_ACTIVE in families, version
        assert replication.SLOT_RETAINED in families, version
        assert (replication.SLOT_WAL_STATUS in families) == (version >= 130000), version
        assert stats.OLDEST_LOCK_WAIT in families, version
