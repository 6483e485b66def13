"""The PostgreSQL probe against a real server, through the real exporter process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from credentials import MONITOR_PASSWORD, MONITOR_USER
from exporter_process import ExporterProcess, Scrape, promtool_check_metrics, up_is

from scripts.testservers.base import wait_until
from scripts.testservers.postgres import PostgresServer

pytestmark = pytest.mark.slow  # every test here starts a server or the exporter


def pg_config(
    server: PostgresServer,
    *,
    interval: str = "1s",
    timeout: str = "1s",
    password: str = "${PGPW}",
    max_size: int = 2,
    name: str = "orders-db",
) -> str:
    return f"""
defaults: {{interval: {interval}, timeout: {timeout}}}
targets:
  - name: {name}
    kind: postgres
    dsn: postgresql://{MONITOR_USER}@127.0.0.1:{server.port}/postgres
    password: {password}
    pool: {{min_size: 1, max_size: {max_size}}}
    labels: {{team: payments}}
host: {{enabled: false}}
"""


def test_families_and_plausible_values(postgres: PostgresServer, workdir: Path) -> None:
    env = {"PGPW": MONITOR_PASSWORD}
    with ExporterProcess(workdir, config=pg_config(postgres), env=env) as exp:
        m = exp.wait_for(
            "two successful probes",
            lambda e: (
                (e.value("resilience_probe_duration_seconds_count", target="orders-db") or 0) >= 2
            ),
            timeout=20,
        )
        t = {"target": "orders-db"}
        assert m.value("resilience_up", **t, kind="postgres") == 1
        assert m.value("resilience_up", **t, team="payments") == 1, "constant labels apply"
        assert (m.value("resilience_last_success_timestamp_seconds", **t) or 0) > 1.7e9
        assert m.value("resilience_probe_errors_total", **t, reason="auth") == 0
        assert m.value("resilience_postgres_max_connections", **t) == 100
        assert m.value("resilience_postgres_reserved_connections", **t) == 3
        # The probe's own session is active while it counts.
        assert (m.value("resilience_postgres_connections", **t, state="active") or 0) >= 1
        assert m.label_values("resilience_postgres_connections", "state") >= {
            "active",
            "idle",
            "idle_in_transaction",
            "idle_in_transaction_aborted",
        }
        assert m.value("resilience_postgres_oldest_transaction_seconds", **t) is not None
        pool = {"pool": "orders-db", "source": "exporter"}
        assert m.value("resilience_pool_max_connections", **pool) == 2
        assert m.value("resilience_pool_min_connections", **pool) == 1
        in_use = m.value("resilience_pool_connections", **pool, state="in_use")
        idle = m.value("resilience_pool_connections", **pool, state="idle")
        assert in_use is not None
        assert idle is not None
        assert 1 <= in_use + idle <= 2
        assert m.value("resilience_pool_pending_requests", **pool) == 0
        assert (m.value("resilience_pool_acquire_duration_seconds_count", **pool) or 0) >= 2
        assert (m.value("resilience_pool_connect_duration_seconds_count", **pool) or 0) >= 1
        assert m.value("resilience_pool_errors_total", **pool, operation="connect") == 0
        assert m.value("resilience_pool_connections_lost_total", **pool) == 0
        assert m.types["resilience_probe_duration_seconds"] == "histogram"
        assert m.has("process_resident_memory_bytes")
        assert m.has("resilience_exporter_build_info")

        checked = promtool_check_metrics(exp.text_format())
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout.strip() == ""
        assert checked.stderr.strip() == ""


def test_pool_never_exceeds_its_max(postgres: PostgresServer, workdir: Path) -> None:
    config = pg_config(postgres, max_size=1, name="capped")
    with ExporterProcess(workdir, config=config, env={"PGPW": MONITOR_PASSWORD}) as exp:

        def probed(times: int) -> Callable[[Scrape], bool]:
            return lambda e: (
                (e.value("resilience_probe_duration_seconds_count", target="capped") or 0) >= times
            )

        for times in (1, 2, 3):
            exp.wait_for(f"probe number {times}", probed(times), timeout=20)
            assert postgres.backends("resilience-exporter") <= 1


def test_wrong_password_is_auth_and_never_shown(postgres: PostgresServer, workdir: Path) -> None:
    wrong = "Wrong-Secret-Zq81x"
    with ExporterProcess(workdir, config=pg_config(postgres), env={"PGPW": wrong}) as exp:
        m = exp.wait_for("up 0 reason auth", up_is(0, "orders-db", "auth"), timeout=20)
        assert (
            m.value("resilience_probe_errors_total", target="orders-db", reason="auth") or 0
        ) >= 1
        _, landing, _ = exp.get("/")
        assert "orders-db" in landing
        assert "auth" in landing
        status = exp.stop()
        assert status == 0
        for where, text in (("metrics", m.text), ("landing page", landing), ("logs", exp.logs())):
            assert wrong not in text, f"the password leaked into the {where}"
        assert "auth" in exp.logs()


def test_password_inside_dsn_never_shown(postgres: PostgresServer, workdir: Path) -> None:
    secret = "Inline-Dsn-Secret-4412"
    config = f"""
targets:
  - name: inline
    kind: postgres
    dsn: postgresql://{MONITOR_USER}:{secret}@127.0.0.1:{postgres.port}/postgres
    interval: 1s
    timeout: 1s
"""
    with ExporterProcess(workdir, config=config, args=["--log.level=debug"]) as exp:
        m = exp.wait_for("up 0 reason auth", up_is(0, "inline", "auth"), timeout=20)
        _, landing, _ = exp.get("/")
        exp.stop()
        for text in (m.text, landing, exp.logs()):
            assert secret not in text


def test_stopped_server_goes_down_and_recovers(own_postgres: PostgresServer, workdir: Path) -> None:
    pg = own_postgres
    try:
        config = pg_config(pg, interval="1s", timeout="1s")
        with ExporterProcess(workdir, config=config, env={"PGPW": MONITOR_PASSWORD}) as exp:
            exp.wait_for("up 1", up_is(1, "orders-db"), timeout=20)
            pg.stop()
            # Within interval + timeout (plus scheduling slack), the right reason shows.
            exp.wait_for("up 0 reason refused", up_is(0, "orders-db", "refused"), timeout=2 + 2 + 3)
            # Scrapes answer while the target is down: a short client timeout proves it.
            for _ in range(5):
                exp.scrape(timeout=0.9)
            pg.start()
            exp.wait_for("up 1 again", up_is(1, "orders-db"), timeout=20)
    finally:
        pg.remove()


def test_frozen_server_times_out_while_scrapes_stay_prompt(
    own_postgres: PostgresServer, workdir: Path
) -> None:
    pg = own_postgres
    try:
        config = pg_config(pg, interval="1s", timeout="1s")
        with ExporterProcess(workdir, config=config, env={"PGPW": MONITOR_PASSWORD}) as exp:
            exp.wait_for("up 1", up_is(1, "orders-db"), timeout=20)
            pg.freeze()
            exp.wait_for("up 0 reason timeout", up_is(0, "orders-db", "timeout"), timeout=2 + 2 + 3)
            for _ in range(5):
                exp.scrape(timeout=0.9)
            pg.thaw()
            exp.wait_for("up 1 again", up_is(1, "orders-db"), timeout=30)
            # Sessions the exporter gave up while the server was frozen end as their backends
            # read the closed sockets after the thaw; a leak would stay above the pool's size.
            wait_until(
                lambda: pg.backends("resilience-exporter") <= 2,
                timeout=10, what="the exporter's sessions to settle within its pool",
            )  # fmt: skip
    finally:
        pg.remove()
