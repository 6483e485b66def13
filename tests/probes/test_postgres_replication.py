"""Replication, provoked on real servers: a primary and a streaming standby made by
`pg_basebackup -R -X stream -C -S <slot>`, both probed by the real exporter with only
`pg_monitor`, scraped by a real Prometheus running the shipped rules (short `for:` and small
thresholds through the threshold overrides). Paused replay raises the lag and fires the lag
alerts; resumed, they clear. A stopped standby leaves its slot inactive, retaining WAL: the
slot alerts fire; started again, they clear."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from credentials import MONITOR_PASSWORD, MONITOR_USER
from exporter_process import ExporterProcess, Scrape, promtool_check_metrics
from psycopg import sql
from psycopg.rows import dict_row
from tests_support import Repeating, wait_cleared, wait_firing

from alerts.generate import render, write_rules
from alerts.thresholds import load_thresholds
from resilience_exporter.metrics.families import Sample
from resilience_exporter.probes.postgres import replication as pg_replication
from resilience_exporter.probes.postgres import stats
from scripts.testservers.base import wait_until
from scripts.testservers.postgres import PostgresServer, PostgresStandby
from scripts.testservers.prometheus import PrometheusServer

pytestmark = pytest.mark.slow  # every test here starts a server or the exporter

PRIMARY, STANDBY = "orders-db", "orders-db-standby"
STANDBY_NAME, SLOT = "replica1", "replica1_slot"
JOB = "resilience-exporter"
LAG_SECONDS = 3
RETAINED_BYTES = 40 * 2**20  # more than two 16 MiB WAL segments
# The shipped rules with thresholds a test can reach in seconds.
OVERRIDES = {
    "alerts": {
        "ResiliencePostgresReplicationLagHigh": {"for": "1s", "seconds": LAG_SECONDS},
        "ResiliencePostgresStandbyLagHigh": {"for": "1s", "seconds": LAG_SECONDS},
        "ResiliencePostgresReplicationSlotInactive": {"for": "1s"},
        "ResiliencePostgresReplicationSlotWalRetained": {"for": "1s", "bytes": RETAINED_BYTES},
    }
}
DEADLINE = 60.0


@dataclass
class Replication:
    primary: PostgresServer
    standby: PostgresStandby
    exporter: ExporterProcess
    prometheus: PrometheusServer


def exporter_config(primary: PostgresServer, standby: PostgresServer) -> str:
    targets = "".join(
        f"""
  - name: {name}
    kind: postgres
    dsn: postgresql://{MONITOR_USER}@127.0.0.1:{server.port}/postgres
    password: ${{PGPW}}
    pool: {{min_size: 1, max_size: 2}}"""
        for name, server in ((PRIMARY, primary), (STANDBY, standby))
    )
    return f"defaults: {{interval: 1s, timeout: 1s}}\nhost: {{enabled: false}}\ntargets:{targets}\n"


@pytest.fixture(scope="module")
def replication(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replication]:
    workdir = tmp_path_factory.mktemp("replication")
    rule_files = write_rules(workdir / "rules", render(load_thresholds(overrides=OVERRIDES)))
    with PostgresServer() as primary:
        primary.create_role(MONITOR_USER, MONITOR_PASSWORD)
        primary.execute("CREATE TABLE orders (id serial PRIMARY KEY, note text)")
        with (
            PostgresStandby(primary, name=STANDBY_NAME, slot=SLOT) as standby,
            ExporterProcess(
                workdir,
                config=exporter_config(primary, standby),
                env={"PGPW": MONITOR_PASSWORD},
            ) as exporter,
            PrometheusServer(
                scrape={JOB: [f"127.0.0.1:{exporter.port}"]}, rule_files=rule_files
            ) as prometheus,
        ):
            yield Replication(primary, standby, exporter, prometheus)


@contextlib.contextmanager
def writes(primary: PostgresServer) -> Iterator[None]:
    """Inserts on the primary every 0.2 s until the block ends, as an application would."""
    with (
        psycopg.connect(primary.admin_dsn(), autocommit=True) as conn,
        Repeating(
            lambda: conn.execute("INSERT INTO orders (note) VALUES ('one more')"),
            interval=0.2,
            name="writes",
        ),
    ):
        yield


def standby_labels(**extra: str) -> dict[str, str]:
    # The standby connects through the primary's Unix socket: client_addr is empty, which
    # the exposition (as Prometheus) does not distinguish from no label.
    return {"target": PRIMARY, "application_name": STANDBY_NAME, **extra}


def slot_labels() -> dict[str, str]:
    return {"target": PRIMARY, "slot_name": SLOT, "slot_type": "physical"}


def write_and_catch_up(replication: Replication) -> None:
    """A transaction on the primary, replayed on the standby: from then on the standby has
    a last replayed transaction to date its lag by."""
    replication.primary.execute("INSERT INTO orders (note) VALUES ('first')")
    ((written,),) = replication.primary.execute("SELECT pg_current_wal_lsn()::text")
    # Waited for on the standby itself: the exporter's view of an idle pair (no lag) reads
    # "caught up" before the insert has even reached the standby.
    wait_until(
        lambda: replayed(replication.standby, written),
        timeout=DEADLINE,
        what=f"the standby to replay up to {written}",
    )
    replication.exporter.wait_for("the standby caught up", caught_up, timeout=DEADLINE)


def replayed(standby: PostgresServer, lsn: str) -> bool:
    ((done,),) = standby.execute(
        sql.SQL(
            "SELECT pg_last_wal_replay_lsn() >= {}::pg_lsn"
            " AND pg_last_xact_replay_timestamp() IS NOT NULL"
        ).format(sql.Literal(lsn))
    )
    return bool(done)


def caught_up(e: Scrape) -> bool:
    return (
        e.value("resilience_postgres_replay_lag_bytes", target=STANDBY) == 0
        and e.value("resilience_postgres_replay_lag_seconds", target=STANDBY) == 0
        and e.value("resilience_postgres_standby_lag_bytes", **standby_labels(stage="replay")) == 0
    )


def test_a_streaming_standby_and_its_slot_seen_from_both_ends(replication: Replication) -> None:
    write_and_catch_up(replication)
    m = replication.exporter.wait_for(
        "the standby streaming and caught up",
        lambda e: (
            e.value(
                "resilience_postgres_standbys",
                **standby_labels(state="streaming", sync_state="async"),
            )
            == 1
            and caught_up(e)
        ),
        timeout=DEADLINE,
    )
    # The primary's view.
    assert m.value("resilience_postgres_in_recovery", target=PRIMARY) == 0
    assert m.label_values("resilience_postgres_standby_lag_bytes", "stage") == {
        "sent",
        "write",
        "flush",
        "replay",
    }
    for stage in ("write", "flush", "replay"):
        # The last measured lag, shown for a while after catching up, then 0.
        lag = m.value("resilience_postgres_standby_lag_seconds", **standby_labels(stage=stage))
        assert lag is not None
        assert 0 <= lag < 1
    assert m.value("resilience_postgres_replication_slot_active", **slot_labels()) == 1
    assert (
        m.value(
            "resilience_postgres_replication_slot_wal_status",
            **slot_labels(),
            wal_status="reserved",
        )
        == 1
    )
    assert (
        m.value(
            "resilience_postgres_replication_slot_wal_status", **slot_labels(), wal_status="lost"
        )
        == 0
    )
    assert not m.has("resilience_postgres_replay_lag_seconds", target=PRIMARY)
    assert not m.has("resilience_postgres_wal_receiver_status", target=PRIMARY)
    # The standby's view.
    s = {"target": STANDBY}
    assert m.value("resilience_postgres_in_recovery", **s) == 1
    assert m.value("resilience_postgres_wal_receiver_status", **s, status="streaming") == 1
    assert m.value("resilience_postgres_wal_receiver_status", **s, status="stopped") == 0
    assert m.value("resilience_postgres_replay_paused", **s) == 0
    assert not m.has("resilience_postgres_standbys", target=STANDBY)
    # Idle primary, not stuck replay: the last replayed transaction is seconds old, yet
    # nothing waits for replay, so the lag is 0.
    replication.standby.execute("SELECT 1")  # the standby answers queries
    wait_until(
        lambda: last_replay_age(replication.standby) > 2,
        timeout=DEADLINE,
        what="the last replayed transaction to be a few seconds old",
    )
    m = replication.exporter.scrape()
    assert m.value("resilience_postgres_replay_lag_seconds", **s) == 0
    assert m.value("resilience_postgres_replay_lag_bytes", **s) == 0

    checked = promtool_check_metrics(replication.exporter.text_format())
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == checked.stderr.strip() == ""


def last_replay_age(standby: PostgresServer) -> float:
    rows = standby.execute(
        "SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8"
    )
    return float(rows[0][0])


def test_paused_replay_raises_the_lag_and_fires_the_lag_alerts_then_clears(
    replication: Replication,
) -> None:
    exporter, prometheus = replication.exporter, replication.prometheus
    write_and_catch_up(replication)
    replication.standby.pause_replay()
    try:
        with writes(replication.primary):
            first = exporter.wait_for(
                "replay paused and behind",
                lambda e: (
                    e.value("resilience_postgres_replay_paused", target=STANDBY) == 1
                    and (e.value("resilience_postgres_replay_lag_bytes", target=STANDBY) or 0) > 0
                    and (e.value("resilience_postgres_replay_lag_seconds", target=STANDBY) or 0) > 0
                ),
                timeout=DEADLINE,
            )

            def rose(e: Scrape) -> bool:
                """Both ends see the lag, in bytes and in seconds, above where it was."""
                replay = standby_labels(stage="replay")
                return all(
                    (e.value(name, **labels) or 0) > (first.value(name, **labels) or 0)
                    for name, labels in (
                        ("resilience_postgres_replay_lag_bytes", {"target": STANDBY}),
                        ("resilience_postgres_replay_lag_seconds", {"target": STANDBY}),
                        ("resilience_postgres_standby_lag_bytes", replay),
                        ("resilience_postgres_standby_lag_seconds", replay),
                    )
                )

            risen = exporter.wait_for("the lag rising", rose, timeout=DEADLINE)
            # Flushed on the standby, not replayed: the lag is replay's alone.
            lag_bytes = {
                stage: risen.value(
                    "resilience_postgres_standby_lag_bytes", **standby_labels(stage=stage)
                )
                for stage in ("flush", "replay")
            }
            assert (lag_bytes["flush"] or 0) < (lag_bytes["replay"] or 0), lag_bytes
            wait_firing(
                prometheus, "ResiliencePostgresReplicationLagHigh", timeout=DEADLINE, target=STANDBY
            )
            wait_firing(
                prometheus,
                "ResiliencePostgresStandbyLagHigh",
                timeout=DEADLINE,
                **standby_labels(stage="replay"),
            )
    finally:
        replication.standby.resume_replay()
    exporter.wait_for("caught up again", caught_up, timeout=DEADLINE)
    assert exporter.scrape().value("resilience_postgres_replay_paused", target=STANDBY) == 0
    wait_cleared(
        prometheus,
        "ResiliencePostgresReplicationLagHigh",
        "ResiliencePostgresStandbyLagHigh",
        timeout=DEADLINE,
    )


def test_a_stopped_standby_leaves_its_slot_inactive_retaining_wal(
    replication: Replication,
) -> None:
    primary, exporter, prometheus = (
        replication.primary,
        replication.exporter,
        replication.prometheus,
    )
    slot = slot_labels()
    exporter.wait_for(
        "the slot in use",
        lambda e: e.value("resilience_postgres_replication_slot_active", **slot) == 1,
        timeout=DEADLINE,
    )
    replication.standby.stop()
    try:
        before = exporter.wait_for(
            "the slot inactive, the standby gone from pg_stat_replication",
            lambda e: (
                e.value("resilience_postgres_replication_slot_active", **slot) == 0
                and not e.has("resilience_postgres_standbys", target=PRIMARY)
            ),
            timeout=DEADLINE,
        )
        retained = before.value("resilience_postgres_replication_slot_retained_wal_bytes", **slot)
        assert retained is not None

        def grown(e: Scrape) -> bool:
            # Each round fills and switches a WAL segment the slot must keep.
            primary.execute("INSERT INTO orders (note) SELECT 'bulk' FROM generate_series(1, 2000)")
            primary.execute("SELECT pg_switch_wal()")
            now = e.value("resilience_postgres_replication_slot_retained_wal_bytes", **slot) or 0
            return now > RETAINED_BYTES

        exporter.wait_for("the slot retaining more WAL", grown, timeout=DEADLINE)
        wait_firing(
            prometheus,
            "ResiliencePostgresReplicationSlotInactive",
            "ResiliencePostgresReplicationSlotWalRetained",
            timeout=DEADLINE,
            **slot,
        )
    finally:
        replication.standby.start()
    exporter.wait_for(
        "the standby back on its slot, caught up",
        lambda e: (
            e.value("resilience_postgres_replication_slot_active", **slot) == 1
            and (e.value("resilience_postgres_replication_slot_retained_wal_bytes", **slot) or 0)
            < RETAINED_BYTES
        ),
        timeout=DEADLINE,
    )
    wait_cleared(
        prometheus,
        "ResiliencePostgresReplicationSlotInactive",
        "ResiliencePostgresReplicationSlotWalRetained",
        timeout=DEADLINE,
    )


def test_the_standby_is_made_as_an_operator_would(replication: Replication) -> None:
    """What the proof rests on: a real physical slot on the primary, and the standby's
    configuration written by pg_basebackup -R."""
    rows = replication.primary.execute(
        sql.SQL("SELECT slot_type FROM pg_replication_slots WHERE slot_name = {}").format(
            sql.Literal(SLOT)
        )
    )
    assert rows == [("physical",)]
    auto_conf = Path(replication.standby.data, "postgresql.auto.conf").read_text()
    assert "primary_conninfo" in auto_conf
    assert f"primary_slot_name = '{SLOT}'" in auto_conf
    assert Path(replication.standby.data, "standby.signal").exists()


def test_a_role_without_pg_monitor_reads_unknown_not_healthy(replication: Replication) -> None:
    """The server hides standbys' and the receiver's details from such a role: the samples
    say `unknown`, never a state, a lag of 0 or a stopped receiver they cannot know."""
    replication.primary.create_role("no_monitor", "No-Monitor-Pw-77", monitor=False)
    found: dict[str, list[Sample]] = {}

    def probed() -> bool:
        try:
            for name, server in ((PRIMARY, replication.primary), (STANDBY, replication.standby)):
                dsn = server.dsn("no_monitor", "No-Monitor-Pw-77")
                with psycopg.connect(dsn, autocommit=True) as conn:
                    statement = stats.statement(conn.info.server_version)
                    row = conn.cursor(row_factory=dict_row).execute(statement).fetchone()
                found[name] = stats.samples(name, row)
        except psycopg.OperationalError:  # the role not replayed on the standby yet
            return False
        return True

    wait_until(probed, timeout=DEADLINE, what="the role on both servers")
    standbys = [s for s in found[PRIMARY] if s.family is pg_replication.STANDBYS]
    assert [(dict(s.labels)["state"], dict(s.labels)["sync_state"]) for s in standbys] == [
        ("unknown", "unknown")
    ]
    assert not [s for s in found[PRIMARY] if s.family is pg_replication.STANDBY_LAG_SECONDS]
    assert not [s for s in found[PRIMARY] if s.family is pg_replication.STANDBY_LAG_BYTES]
    receiver = {
        dict(s.labels)["status"]: s.value
        for s in found[STANDBY]
        if s.family is pg_replication.WAL_RECEIVER_STATUS
    }
    assert receiver["unknown"] == 1
    assert receiver["stopped"] == receiver["streaming"] == 0
