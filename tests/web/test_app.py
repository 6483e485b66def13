"""The process itself: flags and env vars, embedded default, HTTP endpoints, shutdown."""

from __future__ import annotations

import gzip
import http.client
import os
import socket
import struct
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from credentials import MONITOR_PASSWORD, MONITOR_USER
from exporter_process import PROMETHEUS_HEADERS, ExporterProcess, Scrape, run_exporter

import resilience_exporter
from scripts.testservers.postgres import PostgresServer

pytestmark = pytest.mark.slow  # every test here starts a server or the exporter


def test_version() -> None:
    result = run_exporter(["--version"])
    assert result.returncode == 0
    assert resilience_exporter.__version__ in result.stdout


def test_bad_listen_address_exits_2() -> None:
    result = run_exporter(["--web.listen-address=nowhere"])
    assert result.returncode == 2
    assert "web.listen-address" in result.stderr


def test_embedded_default_exports_host_and_process_metrics(workdir: Path) -> None:
    env = {k: "" for k in ("DATABASE_URL", "REDIS_URL")}
    with ExporterProcess(workdir, env=env) as exp:
        m = exp.wait_for(
            "host metrics", lambda e: e.has("resilience_host_memory_total_bytes"), timeout=20
        )
        memory = m.value("resilience_host_memory_total_bytes") or 0
        available = m.value("resilience_host_memory_available_bytes") or 0
        assert 0 < available <= memory
        assert m.value("resilience_host_cpus") == os.cpu_count()
        assert m.has("resilience_host_cpu_seconds_total", mode="idle")
        assert 0 <= (m.value("resilience_host_cpu_utilisation_ratio") or 0) <= 1
        assert m.has("resilience_host_load_average", window="1m")
        assert m.has("resilience_host_network_bytes_total", device="lo", direction="receive")
        root = m.series("resilience_host_filesystem_size_bytes")
        assert root
        assert all(v > 0 for v in root.values())
        assert all(dict(k)["fstype"] not in ("tmpfs", "proc", "sysfs") for k in root)
        opened = m.value("resilience_host_file_descriptors_open") or 0
        assert 0 < opened < (m.value("resilience_host_file_descriptors_max") or 0)
        assert m.has("process_resident_memory_bytes")
        assert m.value("resilience_exporter_targets", kind="host") == 1
        assert exp.stop() == 0, "SIGTERM is a clean shutdown"
    assert "shutting down" in exp.logs()


def test_env_vars_set_flags_and_database_url_adds_a_target(
    postgres: PostgresServer, workdir: Path
) -> None:
    url = postgres.dsn(MONITOR_USER, MONITOR_PASSWORD)
    env = {
        "DATABASE_URL": url,
        "RESILIENCE_EXPORTER_WEB_TELEMETRY_PATH": "/custom",
        "RESILIENCE_EXPORTER_LOG_FORMAT": "json",
    }
    with ExporterProcess(workdir, env=env) as exp:

        def database_up() -> bool:
            status, body, _ = exp.get("/custom")
            return status == 200 and Scrape(body).value("resilience_up", target="database") == 1

        from scripts.testservers.base import wait_until

        wait_until(database_up, timeout=40, what="the DATABASE_URL target to be up")
        assert exp.get("/metrics")[0] == 404
        _, landing, _ = exp.get("/")
        exp.stop()
    assert '"msg": "listening"' in exp.logs()
    for text in (landing, exp.logs()):
        assert MONITOR_PASSWORD not in text


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word: a hung server."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


def test_ready_waits_for_first_round_and_metrics_never_wait(blackhole: int, workdir: Path) -> None:
    config = f"""
targets:
  - name: hung
    kind: postgres
    dsn: postgresql://u@127.0.0.1:{blackhole}/db
    interval: 10s
    timeout: 5s
host: {{enabled: false}}
"""
    with ExporterProcess(workdir, config=config) as exp:
        status, _body, _ = exp.get("/-/ready")
        assert status == 503, "the first probe of the hung target cannot have finished yet"
        m = exp.scrape(timeout=2.0)  # well inside the target's 5s timeout
        assert m.value("resilience_up", target="hung") is None
        _, landing, _ = exp.get("/")
        assert "pending" in landing
        exp.wait_for(
            "up 0 reason timeout",
            lambda e: e.has("resilience_up", target="hung", reason="timeout"),
            timeout=20,
        )
        assert exp.get("/-/ready")[0] == 200


def test_http_endpoints(workdir: Path) -> None:
    with ExporterProcess(workdir, config="host: {enabled: true}\n") as exp:
        assert exp.get("/-/healthy")[0] == 200
        assert exp.get("/nope")[0] == 404
        _, _, headers = exp.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        assert headers["Content-Type"].startswith("application/openmetrics-text")
        _, text, _ = exp.get("/metrics", headers={"Accept": "application/openmetrics-text"})
        assert text.rstrip().endswith("# EOF")
        request = urllib.request.Request(exp.url + "/metrics", headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.headers["Content-Encoding"] == "gzip"
            assert b"resilience_exporter_build_info" in gzip.decompress(response.read())
        status, landing, headers = exp.get("/")
        assert status == 200
        assert "text/html" in headers["Content-Type"]
        assert "host" in landing


def test_head_and_a_scraper_that_hangs_up(workdir: Path) -> None:
    """HEAD gets the headers and no body, so the next request on the same connection is
    read as a request; a scraper that closes the connection while the body is on its way
    (Prometheus at its scrape timeout) costs neither an error log nor the exporter."""
    with ExporterProcess(workdir, config="host: {enabled: true}\n") as exp:
        conn = http.client.HTTPConnection("127.0.0.1", exp.port, timeout=5)
        try:
            conn.request("HEAD", "/metrics", headers=PROMETHEUS_HEADERS)
            head = conn.getresponse()
            assert head.status == 200
            assert int(head.headers["Content-Length"]) > 0
            assert head.read() == b""
            conn.request("GET", "/-/healthy")
            after = conn.getresponse()
            assert (after.status, after.read()) == (200, b"Healthy\n")
        finally:
            conn.close()
        for _ in range(20):
            with socket.create_connection(("127.0.0.1", exp.port), timeout=5) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: exporter\r\n\r\n")
                sock.recv(64)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        assert exp.get("/-/healthy")[0] == 200
        assert exp.scrape().has("resilience_exporter_build_info")
        assert "Error handling request" not in exp.logs()
