"""Which failure signals each exporter exports, measured: real servers in trouble, the peer
exporters and ours scraping them side by side, and per signal the series each one shows.

    python -m bench.coverage            # after `make peers`; prints a Markdown report

PostgreSQL: a primary and a streaming standby (`pg_basebackup -R -X stream -C -S`), a second,
inactive physical slot, replay paused on the standby while the primary takes writes, a
session waiting for a row lock another holds, a long statement, a deadlock, rollbacks and a
sort spilling to a temporary file. postgres_exporter runs as Debian configures it (no
`--extend.query-path`) and again with Debian's example queries.yaml. PgBouncer: a pool of 2
with a reserve of 2 and four transactions at once. Every role has only what
docs/security.md asks for (`pg_monitor`; PgBouncer's `stats_users`).

docs/coverage.md is written from this report.
"""

from __future__ import annotations

import contextlib
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import psycopg
from prometheus_client.parser import text_string_to_metric_families

from bench import harness
from bench.coverage_signals import KEYWORDS, PGBOUNCER, POSTGRES, Signal
from scripts.testservers.base import free_port, wait_until
from scripts.testservers.pgbouncer import PgBouncerServer
from scripts.testservers.postgres import PostgresServer, PostgresStandby

USER, PASSWORD = "coverage_monitor", "coverage-monitor-pw"
EXAMPLE_QUERIES = Path("/usr/share/doc/prometheus-postgres-exporter/examples/queries.yaml")
SETTLE_SECONDS = 8.0


def families(measured: harness.Measured) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = measured.scrape(plain=True)[1].decode()  # which series exist: the text parser reads it
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            found.setdefault(s.name, []).append((s.labels, s.value))
    return found


def matching(
    exposition: dict[str, list[tuple[dict[str, str], float]]], patterns: Sequence[str]
) -> list[str]:
    return sorted(name for name in exposition if any(re.search(p, name) for p in patterns))


@contextlib.contextmanager
def incident(primary: PostgresServer, standby: PostgresStandby) -> Iterator[None]:
    """Everything at once: a lock wait, a long statement, paused replay under writes, an
    inactive slot; a deadlock, rollbacks and a temporary file already happened."""
    admin = primary.admin_dsn()
    primary.execute("CREATE TABLE IF NOT EXISTS rows (id int PRIMARY KEY, v int)")
    primary.execute("INSERT INTO rows VALUES (1, 0), (2, 0) ON CONFLICT DO NOTHING")
    primary.execute("SELECT pg_create_physical_replication_slot('gone_consumer', true)")
    deadlock(admin)
    with psycopg.connect(admin, autocommit=True) as conn:
        for _ in range(3):
            with conn.transaction(force_rollback=True):
                conn.execute("SELECT 1")
        conn.execute("SET work_mem = '64kB'")
        conn.execute(
            "SELECT count(*) FROM (SELECT g FROM generate_series(1, 100000) g ORDER BY g DESC) s"
        )
    standby.pause_replay()
    holder = psycopg.connect(admin)
    holder.execute("UPDATE rows SET v = v + 1 WHERE id = 1")
    stop = threading.Event()
    background = [
        threading.Thread(target=run, args=(admin, sql), daemon=True)
        for sql in ("UPDATE rows SET v = v + 1 WHERE id = 1", "SELECT pg_sleep(60)")
    ]
    writer = threading.Thread(target=write_until, args=(admin, stop), daemon=True)
    for thread in [*background, writer]:
        thread.start()
    try:
        time.sleep(SETTLE_SECONDS)
        yield
    finally:
        stop.set()
        holder.close()
        standby.resume_replay()
        primary.execute(
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity"
            " WHERE query LIKE 'SELECT pg_sleep%'"
        )
        for thread in [*background, writer]:
            thread.join(10)


def run(dsn: str, sql: str) -> None:
    with contextlib.suppress(psycopg.Error), psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql)


def write_until(dsn: str, stop: threading.Event) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not stop.wait(0.2):
            conn.execute(
                "INSERT INTO rows SELECT g, 0 FROM generate_series(3, 1000) AS g"
                " ON CONFLICT (id) DO UPDATE SET v = rows.v + 1"
            )


def deadlock(dsn: str) -> None:
    first, second = psycopg.connect(dsn), psycopg.connect(dsn)
    try:
        first.execute("UPDATE rows SET v = v + 1 WHERE id = 1")
        second.execute("UPDATE rows SET v = v + 1 WHERE id = 2")
        crossing = threading.Thread(
            target=lambda: run_in(first, "UPDATE rows SET v = v + 1 WHERE id = 2"), daemon=True
        )
        crossing.start()
        time.sleep(0.3)
        run_in(second, "UPDATE rows SET v = v + 1 WHERE id = 1")
        crossing.join(10)
    finally:
        first.close()
        second.close()


def run_in(conn: psycopg.Connection[tuple[object, ...]], sql: str) -> None:
    with contextlib.suppress(psycopg.errors.DeadlockDetected):
        conn.execute(sql)
    conn.rollback()


def hold_transactions(bouncer: PgBouncerServer, n: int, release: threading.Event) -> None:
    def hold() -> None:
        with psycopg.connect(
            bouncer.dsn(USER, PASSWORD, "postgres"), prepare_threshold=None
        ) as conn:
            conn.execute("SELECT 1")
            release.wait(120)
            conn.rollback()

    for _ in range(n):
        threading.Thread(target=hold, daemon=True).start()


def our_config(primary: PostgresServer, standby: PostgresServer, bouncer: PgBouncerServer) -> str:
    return f"""
defaults: {{interval: 1s, timeout: 1s}}
host: {{enabled: false}}
targets:
  - {{name: primary, kind: postgres, dsn: "{primary.dsn(USER)}", password: "${{PW}}"}}
  - {{name: standby, kind: postgres, dsn: "{standby.dsn(USER)}", password: "${{PW}}"}}
  - name: bouncer
    kind: pgbouncer
    dsn: "{bouncer.dsn(USER)}"
    password: "${{PW}}"
    check_databases: [postgres]
"""


def table(
    title: str,
    signals: Sequence[Signal],
    peers: dict[str, dict[str, list[tuple[dict[str, str], float]]]],
    ours: dict[str, list[tuple[dict[str, str], float]]],
) -> list[str]:
    names = list(peers)
    lines = [f"## {title}", "", "| Signal | " + " | ".join(names) + " | resilience-exporter |"]
    lines.append("|---" * (len(names) + 2) + "|")
    for signal in signals:
        cells = [
            ", ".join(f"`{n}`" for n in matching(e, signal.peer)) or "—" for e in peers.values()
        ]
        ours_cell = ", ".join(f"`{n}`" for n in matching(ours, signal.ours)) or "—"
        lines.append(f"| {signal.name} | " + " | ".join(cells) + f" | {ours_cell} |")
    for name, exposition in peers.items():
        words = sorted(n for n in exposition if re.search(KEYWORDS, n))
        lines += ["", f"{name}: families matching /{KEYWORDS}/: " + (", ".join(words) or "none")]
    return [*lines, ""]


def postgres_peers(
    stack: contextlib.ExitStack, workdir: Path, primary: PostgresServer, standby: PostgresServer
) -> dict[str, harness.Measured]:
    """postgres_exporter on each server, as Debian configures it and with its example
    queries.yaml."""
    binary = harness.binary("prometheus-postgres-exporter", "prometheus-postgres-exporter")
    peers: dict[str, harness.Measured] = {}
    for name, server, extra in (
        ("postgres_exporter primary", primary, []),
        ("postgres_exporter standby", standby, []),
        ("+ example queries.yaml primary", primary, [f"--extend.query-path={EXAMPLE_QUERIES}"]),
        ("+ example queries.yaml standby", standby, [f"--extend.query-path={EXAMPLE_QUERIES}"]),
    ):
        port = free_port()
        peers[name] = harness.start_process(
            name.replace(" ", "-"),
            [binary, f"--web.listen-address=127.0.0.1:{port}", *extra],
            replaces="postgres", port=port, workdir=workdir,
            env={"DATA_SOURCE_NAME": server.dsn(USER, PASSWORD)},
        )  # fmt: skip
        stack.callback(peers[name].process.stop)
    return peers


def pgbouncer_peer(
    stack: contextlib.ExitStack, workdir: Path, bouncer: PgBouncerServer
) -> harness.Measured:
    port = free_port()
    config = workdir / "pgbouncer-exporter.yml"
    config.write_text(
        f"exporter_host: 127.0.0.1\nexporter_port: {port}\npgbouncers:\n"
        f"  - dsn: {bouncer.dsn(USER, PASSWORD)}\n"
    )
    peer = harness.start_process(
        "pgbouncer_exporter",
        [str(harness.PEERS_VENV / "bin" / "pgbouncer-exporter"), f"--config={config}"],
        replaces="pgbouncer", port=port, workdir=workdir,
    )  # fmt: skip
    stack.callback(peer.process.stop)
    return peer


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="coverage-"))
    env = {"PW": PASSWORD}
    with contextlib.ExitStack() as stack:
        primary = stack.enter_context(PostgresServer())
        primary.create_role(USER, PASSWORD)
        standby = stack.enter_context(PostgresStandby(primary))
        bouncer = stack.enter_context(
            PgBouncerServer(
                primary, users=[(USER, PASSWORD)], pool_size=2, reserve_pool_size=2,
                reserve_pool_timeout=0.5,
            )
        )  # fmt: skip
        exporter = harness.ours(workdir, our_config(primary, standby, bouncer), env)
        stack.callback(exporter.process.stop)
        peers = postgres_peers(stack, workdir, primary, standby)
        bouncer_peer = pgbouncer_peer(stack, workdir, bouncer)
        harness.wait_ready(exporter, timeout=60)
        release = threading.Event()
        stack.callback(release.set)
        hold_transactions(bouncer, 4, release)
        with incident(primary, standby):
            scraped = {name: families(p) for name, p in peers.items()}
            ours = families(exporter)
            bouncer_scraped = families(bouncer_peer)
        # Idle primary, caught-up standby: how each reads the standby's replay lag.
        idle = idle_replay_lag(primary, standby, peers["+ example queries.yaml standby"], exporter)
        pg_peers = {
            "postgres_exporter 0.11 (Debian defaults)": merge(
                scraped["postgres_exporter primary"], scraped["postgres_exporter standby"]
            ),
            "with examples/queries.yaml": merge(
                scraped["+ example queries.yaml primary"], scraped["+ example queries.yaml standby"]
            ),
        }
        report = [
            "# Coverage measured by `python -m bench.coverage`",
            "",
            *table("PostgreSQL", POSTGRES, pg_peers, ours),
            *table(
                "PgBouncer",
                PGBOUNCER,
                {"prometheus-pgbouncer-exporter (PyPI)": bouncer_scraped},
                ours,
            ),
            "## An idle primary",
            "",
            *idle,
            "",
            "## Values during the incident",
            "",
            *incident_values(
                {**scraped, "prometheus-pgbouncer-exporter": bouncer_scraped, "ours": ours}
            ),
        ]
    sys.stdout.write("\n".join(report) + "\n")
    return 0


def idle_replay_lag(
    primary: PostgresServer,
    standby: PostgresStandby,
    peer: harness.Measured,
    exporter: harness.Measured,
) -> list[str]:
    """After the incident: replay resumed, writes stopped, the standby caught up; then
    nothing happens for a while. The standby's replay lag as each exporter reads it."""
    primary.execute("INSERT INTO rows VALUES (1000000, 0) ON CONFLICT DO NOTHING")

    def caught_up() -> bool:
        rows = standby.execute("SELECT pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()")
        return bool(rows[0][0])

    wait_until(caught_up, timeout=60, what="the standby to catch up")
    time.sleep(SETTLE_SECONDS)
    age = standby.execute(
        "SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8"
    )[0][0]
    peer_lag = families(peer).get("pg_replication_lag", [({}, float("nan"))])[0][1]
    ours = [v for labels, v in families(exporter)["resilience_postgres_replay_lag_seconds"]]
    return [
        f"Standby caught up, last transaction replayed {age:.1f} s ago, nothing received since:",
        f"`pg_replication_lag` (example queries.yaml) = {peer_lag:g};",
        f"`resilience_postgres_replay_lag_seconds` = {ours[0]:g}.",
    ]


def merge(
    *expositions: dict[str, list[tuple[dict[str, str], float]]],
) -> dict[str, list[tuple[dict[str, str], float]]]:
    merged: dict[str, list[tuple[dict[str, str], float]]] = {}
    for exposition in expositions:
        for name, samples in exposition.items():
            merged.setdefault(name, []).extend(samples)
    return merged


def incident_values(
    expositions: dict[str, dict[str, list[tuple[dict[str, str], float]]]],
) -> list[str]:
    """The series of the provoked signals, database `postgres` only, with their values."""
    wanted = (
        r"^pg_stat_activity_max_tx_duration$|^pg_locks_count$|^pg_stat_database_deadlocks"
        r"|^pg_replication_lag$|^pg_stat_replication_|^pg_replication_slots_"
        r"|^pgbouncer_pools_server|^pgbouncer_databases_database_(pool_size|reserve)"
        r"|^resilience_postgres_(oldest|lock|blocked|blocking|deadlocks|replay|standby_lag"
        r"|replication_slot_(active|retained))|^resilience_pgbouncer_(servers|reserve|pool_size)"
    )
    lines = []
    for name, exposition in expositions.items():
        lines += [f"### {name}", "", "```"]
        for family_name in sorted(n for n in exposition if re.search(wanted, n)):
            for labels, value in exposition[family_name]:
                database = labels.get("datname") or labels.get("database") or "postgres"
                if database != "postgres" or (value == 0 and "state" in labels):
                    continue
                shown = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
                lines.append(f"{family_name}{{{shown}}} {value:g}")
        lines += ["```", ""]
    return lines


if __name__ == "__main__":
    sys.exit(main())
