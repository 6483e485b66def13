"""Load on the exporter's own HTTP side: a burst of concurrent scrapes and clients that never
read must not stall other scrapes or the probes, and memory must stay bounded.

Bounded in count and time, loopback only. Set RESILIENCE_SOAK_SCRAPES for a longer soak.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from credentials import MONITOR_PASSWORD, MONITOR_USER
from exporter_process import PROMETHEUS_HEADERS, ExporterProcess, Scrape

from scripts.testservers.postgres import PostgresServer

pytestmark = pytest.mark.slow  # every test here starts a server or the exporter

CONCURRENT_SCRAPES = 1000
SLOW_CLIENTS = 50
SOAK_SCRAPES = int(os.environ.get("RESILIENCE_SOAK_SCRAPES", "1500"))


@pytest.fixture(scope="module")
def loaded_exporter(
    postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExporterProcess]:
    config = f"""
host: {{enabled: true}}
defaults: {{interval: 1s, timeout: 1s}}
targets:
  - name: db
    kind: postgres
    dsn: {postgres.dsn(MONITOR_USER)}
    password: ${{PGPW}}
"""
    with ExporterProcess(
        tmp_path_factory.mktemp("load"), config=config, env={"PGPW": MONITOR_PASSWORD}
    ) as exp:
        exp.wait_for("db up", lambda e: e.value("resilience_up", target="db") == 1, 20)
        yield exp


def probes_done(exp: ExporterProcess) -> float:
    return exp.scrape().value("resilience_probe_duration_seconds_count", target="db") or 0


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def burst(url: str, count: int) -> list[int]:
    """`count` concurrent scrapes with Prometheus' headers (aiohttp decompresses the answer)."""
    connector = aiohttp.TCPConnector(limit=count)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one() -> int:
            async with session.get(url, headers=PROMETHEUS_HEADERS) as response:
                assert response.headers["Content-Encoding"] == "gzip"
                body = await response.read()
                assert b"resilience_up" in body
                assert body.endswith(b"# EOF\n")
                return response.status

        return await asyncio.gather(*(one() for _ in range(count)))


def open_slow_clients(port: int) -> list[socket.socket]:
    """Half of them ask for /metrics and never read; half never finish their headers."""
    clients = []
    for i in range(SLOW_CLIENTS):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        if i % 2:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 20)
        else:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        clients.append(sock)
    return clients


def test_burst_of_scrapes_with_slow_clients_stalls_nothing(
    loaded_exporter: ExporterProcess,
) -> None:
    exp = loaded_exporter
    slow = open_slow_clients(exp.port)
    try:
        before = probes_done(exp)
        statuses = asyncio.run(burst(exp.url + "/metrics", CONCURRENT_SCRAPES))
        assert statuses == [200] * CONCURRENT_SCRAPES
        # Other scrapes are still served while the slow clients hold their connections ...
        assert Scrape(exp.get("/metrics", timeout=5)[1]).has("resilience_up")
        # ... and the probes kept running through it all.
        exp.wait_for(
            "probes to keep running",
            lambda e: (
                (e.value("resilience_probe_duration_seconds_count", target="db") or 0) > before + 1
            ),
            20,
        )
        assert exp.scrape().value("resilience_up", target="db") == 1
    finally:
        for sock in slow:
            sock.close()
    assert exp.proc is not None
    assert exp.proc.poll() is None


def test_soak_keeps_memory_bounded(loaded_exporter: ExporterProcess) -> None:
    exp = loaded_exporter
    assert exp.proc is not None
    asyncio.run(burst(exp.url + "/metrics", 200))  # warm up allocator and caches
    start = rss_bytes(exp.proc.pid)
    for _ in range(max(SOAK_SCRAPES // 100, 1)):
        asyncio.run(burst(exp.url + "/metrics", 100))
    growth = rss_bytes(exp.proc.pid) - start
    print(f"RSS growth over {SOAK_SCRAPES} scrapes: {growth / 1e6:.1f} MB from {start / 1e6:.1f}")
    # A leak of even 10 KB per scrape would show as 15 MB here.
    assert growth < 15e6
