"""PostgreSQL failures the exporter must live through: each becomes `up 0` with the right
reason within interval + timeout, scrapes stay prompt, and it recovers by itself."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from credentials import MONITOR_PASSWORD, MONITOR_USER
from exporter_process import ExporterProcess, Scrape, up_is

from scripts.testservers.base import free_port
from scripts.testservers.postgres import PostgresServer

pytestmark = pytest.mark.slow  # every test here starts a server or the exporter

INTERVAL_AND_TIMEOUT = 2.0
# Deadlines for polls: interval + timeout, plus room for a loaded CI machine.
DEADLINE = INTERVAL_AND_TIMEOUT + 8


def target_config(dsn: str, name: str = "db") -> str:
    return f"""
host: {{enabled: false}}
targets:
  - name: {name}
    kind: postgres
    dsn: {dsn}
    password: ${{PGPW}}
    interval: 1s
    timeout: 1s
"""


def down_with(reason: str) -> Callable[[Scrape], bool]:
    return up_is(0, "db", reason)


def up() -> Callable[[Scrape], bool]:
    return up_is(1, "db")


def assert_prompt_scrapes(exp: ExporterProcess) -> None:
    """A client timeout below the target's timeout: a scrape waiting on the target would fail."""
    for _ in range(3):
        exp.scrape(timeout=0.9)


def test_unresolvable_host_is_dns(workdir: Path) -> None:
    # A leading hyphen is rejected by the resolver library itself: no DNS query leaves the host.
    config = target_config("postgresql://monitor@-nowhere.invalid:5432/postgres")
    with ExporterProcess(workdir, config=config, env={"PGPW": "x"}) as exp:
        exp.wait_for("up 0 reason dns", down_with("dns"), DEADLINE)
        assert_prompt_scrapes(exp)


def test_port_with_no_listener_is_refused(workdir: Path) -> None:
    config = target_config(f"postgresql://monitor@127.0.0.1:{free_port()}/postgres")
    with ExporterProcess(workdir, config=config, env={"PGPW": "x"}) as exp:
        exp.wait_for("up 0 reason refused", down_with("refused"), DEADLINE)
        assert_prompt_scrapes(exp)


@pytest.fixture
def small_server() -> Iterator[PostgresServer]:
    """max_connections 5 with 3 reserved for superusers: two slots for everyone else."""
    with PostgresServer(max_connections=5) as server:
        server.create_role(MONITOR_USER, MONITOR_PASSWORD)
        server.create_role("app", "app-pw", monitor=False)
        yield server


def test_server_out_of_connection_slots(small_server: PostgresServer, workdir: Path) -> None:
    pg = small_server
    config = target_config(pg.dsn(MONITOR_USER))
    with ExporterProcess(workdir, config=config, env={"PGPW": MONITOR_PASSWORD}) as exp:
        exp.wait_for("up 1", up(), DEADLINE)
        # The exporter holds one slot; the application takes the other. Then the exporter's
        # pool loses its connection and must open a new one: there is no slot left for it.
        hog = psycopg.connect(pg.dsn("app", "app-pw"))
        try:
            # Waits (up to 5 s) for the backend to exit: its slot is free once this returns.
            pg.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                "WHERE application_name = 'resilience-exporter'"
            )
            second = psycopg.connect(pg.dsn("app", "app-pw"))
            try:
                m = exp.wait_for(
                    "up 0 reason too_many_connections",
                    down_with("too_many_connections"),
                    DEADLINE,
                )
                assert (m.value("resilience_probe_errors_total", target="db",
                                reason="too_many_connections") or 0) >= 1  # fmt: skip
                assert_prompt_scrapes(exp)
            finally:
                second.close()
        finally:
            hog.close()
        exp.wait_for("up 1 once a slot is free", up(), DEADLINE + 10)


def test_restart_loop_recovers_every_time(workdir: Path) -> None:
    with PostgresServer() as pg:
        pg.create_role(MONITOR_USER, MONITOR_PASSWORD)
        config = target_config(pg.dsn(MONITOR_USER))
        with ExporterProcess(workdir, config=config, env={"PGPW": MONITOR_PASSWORD}) as exp:
            for _ in range(3):
                exp.wait_for("up 1", up(), DEADLINE + 10)
                assert pg.backends("resilience-exporter") <= 2, "never more than the pool max"
                pg.stop()
                exp.wait_for("up 0 reason refused", down_with("refused"), DEADLINE)
                assert_prompt_scrapes(exp)
                pg.start()
            exp.wait_for("up 1 after the last restart", up(), DEADLINE + 10)
            assert exp.proc is not None
            assert exp.proc.poll() is None
