"""The PgBouncer probe against a real PgBouncer in front of a real PostgreSQL, through the real
exporter; and the full exposition with every kind configured."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import REDIS_ACL_PASSWORD, REDIS_ACL_USER
from credentials import MONITOR_PASSWORD, MONITOR_USER
from exporter_process import ExporterProcess, promtool_check_metrics, up_is
from pgbouncer_support import WaitingClient, bouncer_config
from tests_support import eventually

from resilience_exporter.configuration.loader import parse
from resilience_exporter.configuration.yamlfile import ConfigError
from resilience_exporter.probes.pgbouncer import PgBouncerProbe, PgBouncerTarget
from scripts.testservers.pgbouncer import PgBouncerServer
from scripts.testservers.postgres import PostgresServer
from scripts.testservers.redis import RedisServer


@pytest.mark.slow
def test_families_and_plausible_values(pgbouncer: PgBouncerServer, workdir: Path) -> None:
    # Some traffic through PgBouncer, so that the counters have something to count.
    with psycopg.connect(
        pgbouncer.dsn(MONITOR_USER, MONITOR_PASSWORD, "postgres"),
        autocommit=True,
        prepare_threshold=None,
    ) as conn:
        for _ in range(3):
            conn.execute("SELECT pg_sleep(0.01)")
    config = bouncer_config(pgbouncer)
    with ExporterProcess(workdir, config=config, env={"PGB_PW": MONITOR_PASSWORD}) as exp:
        m = exp.wait_for(
            "two probes",
            lambda e: (
                (e.value("resilience_probe_duration_seconds_count", target="bouncer") or 0) >= 2
            ),
            timeout=30,
        )
        t = {"target": "bouncer"}
        assert m.value("resilience_up", **t, kind="pgbouncer") == 1, exp.logs()
        assert m.value("resilience_up", **t, team="platform") == 1
        db = {**t, "database": "postgres"}
        pool = {**db, "user": MONITOR_USER}
        assert m.label_values("resilience_pgbouncer_clients", "state") >= {"active", "waiting"}
        assert m.label_values("resilience_pgbouncer_servers", "state") >= {
            "active",
            "idle",
            "used",
            "tested",
            "login",
        }
        assert m.value("resilience_pgbouncer_clients", **pool, state="waiting") == 0
        assert m.value("resilience_pgbouncer_servers", **pool, state="login") == 0
        # The traffic above and the exporter's checks left a server connection in the pool.
        servers = sum(m.series("resilience_pgbouncer_servers", **pool).values())
        assert 1 <= servers <= 5
        assert m.value("resilience_pgbouncer_max_wait_seconds", **pool) == 0
        assert m.value("resilience_pgbouncer_pool_size", **db) == 5
        assert m.value("resilience_pgbouncer_reserve_pool_size", **db) == 0
        assert m.value("resilience_pgbouncer_max_client_connections", **t) == 50
        # At least the exporter's own console connection.
        assert (m.value("resilience_pgbouncer_client_connections", **t) or 0) >= 1
        assert (m.value("resilience_pgbouncer_transactions_total", **db) or 0) >= 3
        assert (m.value("resilience_pgbouncer_queries_total", **db) or 0) >= 3
        assert (m.value("resilience_pgbouncer_received_bytes_total", **db) or 0) > 0
        assert (m.value("resilience_pgbouncer_sent_bytes_total", **db) or 0) > 0
        # Three pg_sleep(0.01) ran on the server: at least 30 ms of query time.
        assert (m.value("resilience_pgbouncer_query_seconds_total", **db) or 0) >= 0.03
        assert (m.value("resilience_pgbouncer_client_wait_seconds_total", **db) or 0) >= 0
        avg_query = m.value("resilience_pgbouncer_avg_query_duration_seconds", **db)
        avg_wait = m.value("resilience_pgbouncer_avg_wait_duration_seconds", **db)
        assert avg_query is not None
        assert 0 <= avg_query < 10
        assert avg_wait is not None
        assert 0 <= avg_wait < 10
        assert m.value("resilience_pgbouncer_database_up", **db) == 1
        assert m.types["resilience_pgbouncer_transactions"] == "counter"


@pytest.mark.slow
def test_wrong_password_is_auth_and_never_shown(pgbouncer: PgBouncerServer, workdir: Path) -> None:
    wrong = "Wrong-Bouncer-Secret-5d1"
    config = bouncer_config(pgbouncer, password=wrong)
    with ExporterProcess(workdir, config=config) as exp:
        m = exp.wait_for("up 0 reason auth", up_is(0, "bouncer", "auth"), timeout=20)
        _, landing, _ = exp.get("/")
        assert exp.stop() == 0
        for text in (m.text, landing, exp.logs()):
            assert wrong not in text


@pytest.fixture
def bouncer_with_own_postgres(
    own_postgres: PostgresServer,
) -> Iterator[tuple[PostgresServer, PgBouncerServer]]:
    """A PgBouncer in front of the test's own PostgreSQL, both removed afterwards."""
    with PgBouncerServer(own_postgres, users=[(MONITOR_USER, MONITOR_PASSWORD)]) as bouncer:
        yield own_postgres, bouncer


@pytest.mark.slow
def test_database_down_behind_a_live_pgbouncer(
    bouncer_with_own_postgres: tuple[PostgresServer, PgBouncerServer], workdir: Path
) -> None:
    pg, bouncer = bouncer_with_own_postgres
    config = bouncer_config(bouncer)
    db = {"target": "bouncer", "database": "postgres"}
    pool = {**db, "user": MONITOR_USER}
    with ExporterProcess(workdir, config=config, env={"PGB_PW": MONITOR_PASSWORD}) as exp:
        exp.wait_for(
            "PgBouncer and its database up",
            lambda e: (
                up_is(1, "bouncer")(e) and e.value("resilience_pgbouncer_database_up", **db) == 1
            ),
            timeout=30,
        )

        # A hung database: PgBouncer's login to it stalls, clients queue. Two clients, so
        # that one waits even if the other is handed the pool's idle (now hung) connection.
        pg.freeze()
        try:
            with WaitingClient(bouncer), WaitingClient(bouncer):
                try:
                    m = exp.wait_for(
                        "server logins and waiting clients visible",
                        lambda e: (
                            (e.value("resilience_pgbouncer_servers", **pool, state="login") or 0)
                            >= 1
                            and (
                                e.value("resilience_pgbouncer_clients", **pool, state="waiting")
                                or 0
                            )
                            >= 1
                            and (e.value("resilience_pgbouncer_max_wait_seconds", **pool) or 0) > 0
                            and e.value("resilience_pgbouncer_database_up", **db, reason="timeout")
                            == 0
                        ),
                        timeout=30,
                    )
                    assert m.value("resilience_up", target="bouncer") == 1, "PgBouncer is up"
                finally:
                    pg.thaw()  # before the clients are joined: their queries then finish
        finally:
            pg.thaw()
        exp.wait_for(
            "the database back",
            lambda e: e.value("resilience_pgbouncer_database_up", **db) == 1,
            timeout=60,
        )

        # A stopped database: PgBouncer stays up, the check through it fails.
        pg.stop()
        with WaitingClient(bouncer):
            m = exp.wait_for(
                "database down, PgBouncer up",
                lambda e: (
                    up_is(1, "bouncer")(e)
                    and (
                        e.value("resilience_pgbouncer_database_up", **db, reason="refused") == 0
                        or e.value("resilience_pgbouncer_database_up", **db, reason="timeout") == 0
                    )
                ),
                timeout=30,
            )
            assert m.value("resilience_pgbouncer_database_up", **db) == 0
        pg.start()
        exp.wait_for(
            "the database back again",
            lambda e: e.value("resilience_pgbouncer_database_up", **db) == 1,
            timeout=60,
        )


@pytest.mark.slow
def test_pgbouncer_stopped_frozen_and_restarted_in_a_loop(
    bouncer_with_own_postgres: tuple[PostgresServer, PgBouncerServer], workdir: Path
) -> None:
    _, bouncer = bouncer_with_own_postgres
    config = bouncer_config(bouncer)
    with ExporterProcess(workdir, config=config, env={"PGB_PW": MONITOR_PASSWORD}) as exp:
        for _ in range(3):
            exp.wait_for("up 1", up_is(1, "bouncer"), timeout=30)
            bouncer.stop()
            exp.wait_for("up 0 reason refused", up_is(0, "bouncer", "refused"), timeout=20)
            for _ in range(3):
                exp.scrape(timeout=0.9)
            bouncer.start()
        exp.wait_for("up 1 again", up_is(1, "bouncer"), timeout=30)

        bouncer.freeze()
        exp.wait_for("up 0 reason timeout", up_is(0, "bouncer", "timeout"), timeout=20)
        for _ in range(3):
            exp.scrape(timeout=0.9)
        bouncer.thaw()
        exp.wait_for("up 1 after thaw", up_is(1, "bouncer"), timeout=30)


def _bouncer_target(text: str) -> PgBouncerTarget:
    target = parse(text, "test.yml", env={}).targets[0]
    assert isinstance(target, PgBouncerTarget)
    return target


@pytest.mark.slow
async def test_close_then_open_reconnects(pgbouncer: PgBouncerServer) -> None:
    """The runtime may close a probe (an open breaker) and open it again later."""
    target = _bouncer_target(
        "targets: [{name: cycle, kind: pgbouncer, interval: 2s, timeout: 2s, dsn: "
        f"'postgresql://{MONITOR_USER}:{MONITOR_PASSWORD}@127.0.0.1:{pgbouncer.port}/pgbouncer'}}]"
    )
    probe = PgBouncerProbe(target)

    def console_clients() -> int:
        with pgbouncer.admin_connect() as conn:
            rows = conn.execute("SHOW CLIENTS").fetchall()
        # Columns: type, user, database, state, addr, port, local_addr, local_port, ...
        # application_name is reported from 1.18 on.
        return sum(1 for row in rows if "resilience-exporter" in row)

    await probe.open()
    assert console_clients() == 0, "open() must not connect"
    assert await probe.probe()
    assert console_clients() == 1
    await probe.close()
    # PgBouncer drops a client when it reads the closed socket, a moment after close().
    await eventually(lambda: console_clients() == 0, "close() to drop the connection", 5)
    await probe.open()
    samples = await probe.probe()
    assert any(s.family.name == "resilience_pgbouncer_pool_size" for s in samples)
    assert console_clients() == 1
    await probe.close()


def test_config_keeps_secrets_out_and_wants_the_console() -> None:
    target = _bouncer_target(
        "targets: [{name: b, kind: pgbouncer, "
        "dsn: 'postgresql://mon:Dsn-Secret-61@h:6432/pgbouncer', "
        "check_databases: [app, {name: other, user: u2, password: Other-Secret-2}]}]"
    )
    assert "Dsn-Secret-61" not in target.dsn
    assert "Dsn-Secret-61" not in target.describe()
    assert target.describe() == "pgbouncer mon@h:6432"
    assert [c.name for c in target.check_databases] == ["app", "other"]
    assert target.check_databases[1].resolve_password() == "Other-Secret-2"
    no_db = _bouncer_target("targets: [{name: b, kind: pgbouncer, dsn: 'host=h user=mon'}]")
    assert "dbname=pgbouncer" in no_db.dsn
    with pytest.raises(ConfigError, match="admin database 'pgbouncer'"):
        _bouncer_target("targets: [{name: b, kind: pgbouncer, dsn: 'postgresql://mon@h/app'}]")
    with pytest.raises(ConfigError, match="twice"):
        _bouncer_target(
            "targets: [{name: b, kind: pgbouncer, dsn: 'host=h', check_databases: [a, a]}]"
        )


@pytest.mark.slow
def test_every_kind_promtool_clean_and_no_password_anywhere(
    postgres: PostgresServer,
    pgbouncer: PgBouncerServer,
    redis_server: RedisServer,
    workdir: Path,
) -> None:
    config = f"""
defaults: {{interval: 2s, timeout: 2s}}
targets:
  - name: orders-db
    kind: postgres
    dsn: postgresql://{MONITOR_USER}:{MONITOR_PASSWORD}@127.0.0.1:{postgres.port}/postgres
  - name: bouncer
    kind: pgbouncer
    dsn: postgresql://{MONITOR_USER}:{MONITOR_PASSWORD}@127.0.0.1:{pgbouncer.port}/pgbouncer
    check_databases: [postgres]
  - name: cache
    kind: redis
    url: redis://{REDIS_ACL_USER}:{REDIS_ACL_PASSWORD}@127.0.0.1:{redis_server.port}/0
host: {{enabled: true}}
"""
    targets = ("orders-db", "bouncer", "cache", "host")
    with ExporterProcess(workdir, config=config, args=["--log.level=debug"]) as exp:
        m = exp.wait_for(
            "every target up",
            lambda e: all(up_is(1, t)(e) for t in targets),
            timeout=40,
        )
        assert m.label_values("resilience_up", "kind") == {"postgres", "pgbouncer", "redis", "host"}
        checked = promtool_check_metrics(exp.text_format())
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout.strip() == ""
        assert checked.stderr.strip() == ""
        _, openmetrics, _ = exp.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        _, landing, _ = exp.get("/")
        for target in targets:
            assert target in landing
        assert exp.stop() == 0
        logs = exp.logs()
        for secret in (MONITOR_PASSWORD, REDIS_ACL_PASSWORD):
            for where, text in (
                ("metrics", m.text),
                ("OpenMetrics", openmetrics),
                ("landing page", landing),
                ("logs", logs),
            ):
                assert secret not in text, f"a password leaked into the {where}"
