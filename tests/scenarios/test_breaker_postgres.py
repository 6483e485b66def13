"""The exporter's breaker against a real PostgreSQL, behind a counting TCP proxy: while the
breaker is open the exporter makes no connection attempt at all."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from credentials import MONITOR_PASSWORD, MONITOR_USER
from exporter_process import ExporterProcess, Scrape, promtool_check_metrics

from resilience_exporter.configuration.loader import parse as parse_config
from resilience_exporter.metrics.families import HistogramValue, Sample, SummaryValue
from resilience_exporter.metrics.pool_schema import POOL_ACQUIRE, POOL_CONNECT, POOL_ERRORS
from resilience_exporter.probes.postgres import PostgresProbe, PostgresTarget
from scripts.testservers.base import free_port, wait_until
from scripts.testservers.postgres import PostgresServer
from scripts.testservers.tcpproxy import CountingProxy

TARGET = "orders-db"
BREAKER = {"breaker": TARGET, "source": "exporter"}
# Reads of the proxy's count must be this far before the next trial is allowed: the
# exporter turns the monotonic deadline into wall time when it publishes.
MARGIN_SECONDS = 0.3


def config(port: int, *, breaker: str, password: str = "${PGPW}") -> str:
    return f"""
defaults: {{interval: 1s, timeout: 1s}}
targets:
  - name: {TARGET}
    kind: postgres
    dsn: postgresql://{MONITOR_USER}@127.0.0.1:{port}/postgres?sslmode=disable
    password: {password}
    pool: {{min_size: 1, max_size: 2}}
    breaker: {breaker}
host: {{enabled: false}}
"""


def state_is(state: str) -> Callable[[Scrape], bool]:
    return lambda e: e.value("resilience_breaker_state", **BREAKER, state=state) == 1


def transitions(e: Scrape, from_state: str, to_state: str) -> float:
    value = e.value(
        "resilience_breaker_transitions_total", **BREAKER, from_state=from_state, to_state=to_state
    )
    assert value is not None
    return value


def calls(e: Scrape, outcome: str) -> float:
    value = e.value("resilience_breaker_calls_total", **BREAKER, outcome=outcome)
    assert value is not None
    return value


def openings(e: Scrape) -> float:
    return transitions(e, "closed", "open") + transitions(e, "half_open", "open")


def rejecting(e: Scrape) -> bool:
    """Open, and this snapshot is a rejected call: the probe's pool closed an interval ago."""
    return state_is("open")(e) and e.has("resilience_up", target=TARGET, reason="breaker_open")


@pytest.mark.slow
def test_open_breaker_makes_no_connection_attempts_then_recovers(
    own_postgres: PostgresServer, workdir: Path
) -> None:
    pg = own_postgres
    breaker = "{consecutive_failures: 3, backoff_base: 2s, backoff_cap: 4s, half_open_successes: 2}"
    with (
        CountingProxy(upstream_port=pg.port) as proxy,
        ExporterProcess(
            workdir, config=config(proxy.port, breaker=breaker), env={"PGPW": MONITOR_PASSWORD}
        ) as exp,
    ):
        m = exp.wait_for("up 1", lambda e: e.value("resilience_up", target=TARGET) == 1, 30)
        assert state_is("closed")(m)
        assert proxy.accepted >= 1, "the exporter connects through the proxy"

        pg.stop()
        m = exp.wait_for("the breaker to open", state_is("open"), timeout=30)
        assert transitions(m, "closed", "open") == 1
        # Trials made since then failed too: each adds one failure and one reopening.
        assert calls(m, "failure") - transitions(m, "half_open", "open") == 3
        checked = promtool_check_metrics(exp.text_format())
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout.strip() == "", "promtool finds nothing to lint"

        # While open: rejected calls every interval, and not one connection to the proxy.
        # A window starts when a scrape shows the breaker open (the runner closed the pool
        # before publishing that) and ends before the published next attempt; together the
        # windows must span 3 rejected ticks.
        rejected_in_windows = 0.0
        last = m

        def watched_a_window() -> bool:
            """Watch one window if the breaker is open now; true once 3 ticks are spanned."""
            nonlocal rejected_in_windows, last
            a = exp.scrape()
            if not state_is("open")(a):
                return False
            next_attempt = a.value("resilience_breaker_next_attempt_timestamp_seconds", **BREAKER)
            assert next_attempt is not None
            assert next_attempt > 0
            accepted_before = proxy.accepted
            last = a
            while True:
                b = exp.scrape()
                accepted_now = proxy.accepted
                if time.time() >= next_attempt - MARGIN_SECONDS:
                    break
                assert openings(b) == openings(a), "still the same opening"
                assert accepted_now == accepted_before, "a connection attempt while open"
                last = b
                time.sleep(0.1)
            rejected_in_windows += calls(last, "rejected") - calls(a, "rejected")
            return rejected_in_windows >= 3

        wait_until(watched_a_window, timeout=120, what="open windows spanning 3 rejected calls")

        # After the back-off: half-open, one trial with a bounded number of connections.
        trials_before = transitions(last, "open", "half_open")
        accepted_before = proxy.accepted
        m = exp.wait_for(
            "a failed trial and the breaker open again",
            lambda e: rejecting(e) and transitions(e, "open", "half_open") > trials_before,
            timeout=60,
        )
        trials = transitions(m, "open", "half_open") - trials_before
        grown = proxy.accepted - accepted_before
        assert 1 <= grown <= 10 * trials, f"{grown} connections for {trials} trials"
        last_error = m.series("resilience_breaker_last_error_info", **BREAKER)
        assert len(last_error) == 1
        assert dict(next(iter(last_error)))["persistent"] == "false"

        pg.start()
        m = exp.wait_for(
            "the breaker closed and up 1",
            lambda e: state_is("closed")(e) and e.value("resilience_up", target=TARGET) == 1,
            timeout=60,
        )
        assert transitions(m, "half_open", "closed") == 1
        assert m.value("resilience_breaker_next_attempt_timestamp_seconds", **BREAKER) == 0
        assert not m.has("resilience_breaker_last_error_info", **BREAKER)
        assert m.value("resilience_breaker_failure_ratio", **BREAKER) == 0


@pytest.mark.slow
def test_persistent_failure_opens_at_once_for_the_cap(
    postgres: PostgresServer, workdir: Path
) -> None:
    wrong = "Wrong-Breaker-Secret-51q"
    with ExporterProcess(
        workdir, config=config(postgres.port, breaker="{}"), env={"PGPW": wrong}
    ) as exp:
        m = exp.wait_for("a call rejected by the open breaker", rejecting, timeout=30)
        assert transitions(m, "closed", "open") == 1
        assert calls(m, "failure") == 1, "a persistent failure opens at once"
        assert calls(m, "rejected") >= 1
        assert m.value(
            "resilience_breaker_last_error_info", **BREAKER, reason="auth", persistent="true"
        )
        # The default cap is 5 minutes, far beyond anything this test waits for.
        next_attempt = m.value("resilience_breaker_next_attempt_timestamp_seconds", **BREAKER)
        assert next_attempt is not None
        assert next_attempt > time.time() + 60
        assert m.value("resilience_probe_errors_total", target=TARGET, reason="auth") == 1
        _, landing, _ = exp.get("/")
        assert "breaker open (last: auth, persistent)" in landing
        exp.stop()
        for text in (m.text, landing, exp.logs()):
            assert wrong not in text


def postgres_probe(port: int) -> PostgresProbe:
    parsed = parse_config(config(port, breaker="{}"), "c.yml", env={"PGPW": MONITOR_PASSWORD})
    (target,) = parsed.targets
    assert isinstance(target, PostgresTarget)
    return PostgresProbe(target)


def histogram_count(samples: list[Sample], name: str) -> int:
    (value,) = [s.value for s in samples if s.family.name == name]
    assert isinstance(value, HistogramValue | SummaryValue)
    return value.count


def connect_errors(probe: PostgresProbe) -> float:
    samples = list(probe.local_samples())
    (value,) = [
        s.value
        for s in samples
        if s.family == POOL_ERRORS and dict(s.labels)["operation"] == "connect"
    ]
    assert isinstance(value, float | int)
    return value


@pytest.mark.slow
async def test_postgres_probe_close_then_open_cycles_keep_its_stats(
    postgres: PostgresServer,
) -> None:
    probe = postgres_probe(postgres.port)
    for _ in range(3):
        await probe.open()
        assert await probe.probe()
        await probe.close()
        assert probe.pool.closed
    samples = list(probe.local_samples())
    assert histogram_count(samples, POOL_ACQUIRE.name) == 3, "one histogram across pools"
    assert histogram_count(samples, POOL_CONNECT.name) >= 3, "each pool connected anew"


async def test_postgres_probe_counters_go_on_across_pools_counting_each_error_once() -> None:
    with CountingProxy(upstream_port=free_port()) as proxy:  # nothing listens upstream
        probe = postgres_probe(proxy.port)
        for _ in range(2):
            before = connect_errors(probe)
            await probe.open()
            with pytest.raises(Exception):  # noqa: B017, PT011  (whatever the pool raises)
                await probe.probe()
            await probe.close()
            errors_of_this_pool = probe.pool.get_stats().get("connections_errors", 0)
            assert errors_of_this_pool > 0, "each fresh pool tried to connect"
            assert connect_errors(probe) == before + errors_of_this_pool
        assert proxy.accepted >= 2
