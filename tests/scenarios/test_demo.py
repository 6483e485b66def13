"""`make demo` (`python -m scripts.demo`) brings up the servers and the exporter, says where."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from exporter_process import Scrape
from tests_support import http_get

from scripts.testservers.base import free_port, wait_until

pytestmark = pytest.mark.slow  # every test here starts a server or the exporter

ROOT = Path(__file__).resolve().parents[2]
DEMO_TARGETS = ("demo-postgres", "demo-pgbouncer", "demo-redis", "host")


def test_demo_serves_postgres_and_host_metrics() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scripts.demo",
            f"--port={free_port()}",
            "--exit-after=120",
            "--app-leak-threshold=1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    output = ""
    try:
        for line in proc.stdout:
            output += line
            if "exporter log" in line:
                break
        match = re.search(r"metrics\s+(http://\S+)", output)
        assert match, output
        url = match.group(1)

        def all_up() -> bool:
            exp = Scrape(http_get(url))
            return all(exp.value("resilience_up", target=t) == 1 for t in DEMO_TARGETS)

        wait_until(all_up, timeout=60, what="the demo's targets to be up")
        exp = Scrape(http_get(url))
        assert exp.has("resilience_postgres_connections")
        assert exp.has("resilience_host_memory_total_bytes")
        assert exp.value("resilience_pgbouncer_database_up", database="postgres") == 1
        assert exp.value("resilience_redis_role", target="demo-redis", role="master") == 1

        # The demo application, read by the exporter: the printed curls leak a connection
        # and open the breaker.
        app = re.search(r"demo application\s+(http://\S+?)/\s", output)
        assert app, output
        shop = {"source": "demo-shop"}
        http_get(f"{app.group(1)}/leak")
        for _ in range(3):
            assert "fallback" in http_get(f"{app.group(1)}/flaky?fail=1")

        def leaked_and_open() -> bool:
            exp = Scrape(http_get(url))
            return (
                exp.value("resilience_pool_long_held_connections", pool="orders-db", **shop) == 1
                and exp.value("resilience_breaker_state", breaker="payments", state="open", **shop)
                == 1
            )

        wait_until(leaked_and_open, timeout=60, what="the leak and the open breaker to show")
        exp = Scrape(http_get(url))
        assert exp.value("resilience_breaker_fallbacks_total", breaker="payments", **shop) == 3
        assert exp.value("resilience_pool_connections", pool="cache", state="idle", **shop) == 0
        http_get(f"{app.group(1)}/release")
        wait_until(
            lambda: (
                Scrape(http_get(url)).value(
                    "resilience_pool_long_held_connections", pool="orders-db", **shop
                )
                == 0
            ),
            timeout=60,
            what="the released connection to stop counting",
        )
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    assert proc.returncode == 0
