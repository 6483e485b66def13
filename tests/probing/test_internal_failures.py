"""An exception no table explains (a defect, or a client library that changed under the
exporter) reads as the target down with `reason="internal"`: counted, logged once per change,
never held against the target's breaker, and never a target missing from /metrics.

The defects are injected into the real Redis probe talking to a real Redis server: the first
as redis-py 5.0.0 gave it (its pool had no `_available_connections`), through the exporter's
own process; the others inside a runner.
"""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import REDIS_DEFAULT_PASSWORD
from exporter_process import ExporterProcess, Scrape

from resilience_exporter.configuration import loader
from resilience_exporter.metrics.encoding import Format, render_lines
from resilience_exporter.metrics.families import Sample
from resilience_exporter.metrics.snapshots import Snapshot, SnapshotStore
from resilience_exporter.probes.redis.probe import RedisProbe
from resilience_exporter.probing.runner import TargetRunner
from resilience_exporter.reasons import Failure
from scripts.testservers.redis import RedisServer

pytestmark = pytest.mark.slow  # every test here starts a server or the exporter

INTERNAL_LOG = "probe failed inside the exporter"
# Loaded by the exporter's interpreter at start (Python imports `sitecustomize` from the path).
MISSING_POOL_ATTRIBUTE = """\
from resilience_exporter.probes.redis import client


def stats(self):
    raise AttributeError("'TimedPool' object has no attribute '_available_connections'")


client.TimedPool.stats = stats
"""


def targets_config(redis_server: RedisServer, *, breaker: str = "") -> str:
    return textwrap.dedent(f"""\
        defaults: {{interval: 200ms, timeout: 200ms}}
        host: {{enabled: false}}
        targets:
          - name: cache
            kind: redis
            url: redis://127.0.0.1:{redis_server.port}/0
            password: {REDIS_DEFAULT_PASSWORD}
            {breaker}
          - name: sessions
            kind: http
            url: http://127.0.0.1:9/health
            breaker: {{enabled: false}}
    """)


def test_a_library_that_changed_under_the_probe_reads_down_not_missing(
    redis_server: RedisServer, workdir: Path
) -> None:
    injected = workdir / "inject"
    injected.mkdir()
    (injected / "sitecustomize.py").write_text(MISSING_POOL_ATTRIBUTE)
    env = {"PYTHONPATH": str(injected)}
    with ExporterProcess(workdir, config=targets_config(redis_server), env=env) as exp:
        m = exp.wait_for(
            "several failed rounds",
            lambda e: (e.value("resilience_probe_errors_total", target="cache", reason="internal")
                       or 0) >= 5,
            timeout=30,
        )  # fmt: skip
        assert m.value("resilience_up", target="cache", kind="redis", reason="internal") == 0
        assert m.series("resilience_up", target="cache") == {
            frozenset({("target", "cache"), ("kind", "redis"), ("reason", "internal")}): 0.0
        }
        assert m.value("resilience_probe_errors_total", target="cache", reason="other") == 0
        # The other target is untouched: down for its own reason.
        assert m.has("resilience_up", target="sessions", reason="refused")
        status, page, _ = exp.get("/")
        assert status == 200
        assert "internal" in page
        logs = exp.logs()
    lines = [line for line in logs.splitlines() if INTERNAL_LOG in line]
    assert len(lines) == 1, "logged once, not every round:\n" + "\n".join(lines)
    assert "target=cache" in lines[0]
    assert "err=\"AttributeError: 'TimedPool' object has no attribute" in lines[0]
    assert "at=" in lines[0], "where it was raised, for the bug report"
    assert "level=error" in lines[0]


def runner_for(redis_server: RedisServer) -> TargetRunner:
    breaker = "breaker: {consecutive_failures: 2}"
    (target, _) = loader.parse(targets_config(redis_server, breaker=breaker), "c.yml").targets
    return TargetRunner(target, SnapshotStore())


def exported(snapshot: Snapshot) -> Scrape:
    return Scrape(render_lines(Format.TEXT, snapshot.lines).decode())


async def test_a_defect_in_the_probe_is_internal_and_never_opens_the_breaker(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    runner = runner_for(redis_server)
    healthy_probe = RedisProbe.probe

    async def broken(self: RedisProbe) -> Sequence[Sample]:
        raise TypeError("connect() got an unexpected keyword argument 'retry_socket_connect'")

    monkeypatch.setattr(RedisProbe, "probe", broken)
    try:
        with caplog.at_level(logging.WARNING, logger="resilience_exporter.probing.runtime"):
            for _ in range(4):  # twice the breaker's consecutive_failures
                snapshot = await runner.run_once()
                assert snapshot.up is False
                assert snapshot.failure is not None
                assert snapshot.failure.reason == "internal"
        assert runner.breaker.state == "closed", "the exporter's failure, not the target's"
        m = exported(snapshot)
        assert m.value("resilience_up", target="cache", kind="redis", reason="internal") == 0
        assert m.value("resilience_probe_errors_total", target="cache", reason="internal") == 4
        assert [r.getMessage() for r in caplog.records] == [INTERNAL_LOG]

        monkeypatch.setattr(RedisProbe, "probe", healthy_probe)
        snapshot = await runner.run_once()
        assert snapshot.up is True
        assert exported(snapshot).value("resilience_up", target="cache", kind="redis") == 1

        monkeypatch.setattr(RedisProbe, "probe", broken)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="resilience_exporter.probing.runtime"):
            await runner.run_once()
            await runner.run_once()
        assert [r.getMessage() for r in caplog.records] == [INTERNAL_LOG], "again, once"
    finally:
        await runner.stop()


async def test_a_failing_classifier_or_opener_is_internal_too(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = runner_for(redis_server)

    async def no_open(self: RedisProbe) -> None:
        raise RuntimeError("cannot make the clients")

    async def refused(self: RedisProbe) -> Sequence[Sample]:
        raise ConnectionRefusedError("connection refused")

    def no_table(self: RedisProbe, exc: BaseException) -> Failure:
        raise KeyError("a table that fails itself")

    try:
        monkeypatch.setattr(RedisProbe, "open", no_open)
        snapshot = await runner.run_once()
        assert snapshot.failure is not None
        assert (snapshot.failure.reason, snapshot.up) == ("internal", False)
        assert "RuntimeError: cannot make the clients" in snapshot.failure.message

        monkeypatch.undo()
        monkeypatch.setattr(RedisProbe, "probe", refused)
        snapshot = await runner.run_once()
        assert snapshot.failure is not None
        assert snapshot.failure.reason == "refused", "what the table explains stays its own"

        monkeypatch.setattr(RedisProbe, "classify", no_table)
        snapshot = await runner.run_once()
        assert snapshot.failure is not None
        assert snapshot.failure.reason == "internal"
        assert "KeyError" in snapshot.failure.message
        assert exported(snapshot).has("resilience_up", target="cache", reason="internal")
    finally:
        await runner.stop()
