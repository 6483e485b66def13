"""The pieces a benchmark run is made of: processes we hold the PID of, their CPU and memory
from /proc, scrapes at a fixed rate, and the statistics of what was measured."""

from __future__ import annotations

import contextlib
import gzip
import http.client
import importlib.util
import os
import shutil
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from scripts.testservers.base import ServerError, ServerProcess, free_port, wait_until

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
REPO = Path(__file__).resolve().parent.parent
PEERS_VENV = REPO / ".venv-peers"


# What Prometheus (2.x and 3.x) sends with every scrape: every number is taken with these.
PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
    "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
}
# The extra column: plain text, no compression (what `curl` asks for).
PLAIN_HEADERS = {"Accept": "text/plain;version=0.0.4"}


class BenchError(RuntimeError):
    pass


def ms(seconds: float) -> str:
    """A duration as the exporter's configuration spells it."""
    return f"{round(seconds * 1000)}ms"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * PAGE_SIZE


def kind_available(kind: str) -> bool:
    """True when the exporter has the probe kind and the harness can start its server."""
    from resilience_exporter.probing.registry import kind_names

    return (
        kind in kind_names() and importlib.util.find_spec(f"scripts.testservers.{kind}") is not None
    )


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: the value below which `fraction` of the values lie."""
    ordered = sorted(values)
    if not ordered:
        raise BenchError("no values to take a percentile of")
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


@dataclass
class Measured:
    """One exporter process under measurement."""

    name: str
    replaces: str  # what it covers: postgres, pgbouncer, redis, host, or "all" for ours
    port: int
    process: ServerProcess
    note: str = ""
    latencies: list[float] = field(default_factory=list)
    plain_latencies: list[float] = field(default_factory=list)
    last_body: bytes = b""
    last_wire_bytes: int = 0
    errors: int = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    def scrape(
        self, path: str = "/metrics", timeout: float = 30.0, *, plain: bool = False
    ) -> tuple[float, bytes]:
        """One scrape on a fresh connection with Prometheus' headers (or `plain` text without
        compression): the seconds until the whole answer was read, and the answer, unpacked.
        Unpacking is not timed: Prometheus does it on its side."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            start = time.perf_counter()
            conn.request("GET", path, headers=PLAIN_HEADERS if plain else PROMETHEUS_HEADERS)
            response = conn.getresponse()
            wire = response.read()
            elapsed = time.perf_counter() - start
        finally:
            conn.close()
        if response.status != 200:
            raise BenchError(f"{self.name}: {path} answered {response.status}: {wire[:200]!r}")
        self.last_wire_bytes = len(wire)
        gzipped = response.getheader("Content-Encoding") == "gzip"
        return elapsed, gzip.decompress(wire) if gzipped else wire

    def answering(self) -> bool:
        if not self.process.running():
            raise ServerError(f"{self.name} exited:\n{self.process.log_text()[-2000:]}")
        try:
            self.scrape(timeout=5.0)
            return True
        except (OSError, BenchError, http.client.HTTPException):
            return False


def series_count(body: bytes) -> int:
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))


def start_process(
    name: str,
    argv: Sequence[str],
    *,
    replaces: str,
    port: int,
    workdir: Path,
    env: Mapping[str, str] | None = None,
    note: str = "",
    answer_timeout: float | None = 60.0,
) -> Measured:
    """Start the process and wait for it to answer (`answer_timeout` None: don't wait)."""
    # `env` execs the program in place (same PID): its environment without touching ours.
    with_env = ["env", *(f"{k}={v}" for k, v in (env or {}).items()), *argv]
    process = ServerProcess(name, with_env, log_path=workdir / f"{name}.log", cwd=workdir)
    process.start()
    measured = Measured(name=name, replaces=replaces, port=port, process=process, note=note)
    if answer_timeout is not None:
        wait_answering(measured, timeout=answer_timeout)
    return measured


def wait_answering(measured: Measured, *, timeout: float) -> None:
    try:
        wait_until(
            measured.answering, timeout=timeout, interval=0.2, what=f"{measured.name} to answer"
        )
    except BaseException:
        measured.process.stop()
        raise


def ours(
    workdir: Path,
    config: str,
    env: Mapping[str, str],
    *,
    args: Sequence[str] = (),
    name: str = "resilience-exporter",
    answer_timeout: float | None = 60.0,
) -> Measured:
    port = free_port()
    config_path = workdir / "resilience-exporter.yml"
    config_path.write_text(config)
    argv = [sys.executable, "-m", "resilience_exporter", f"--web.listen-address=127.0.0.1:{port}",
            f"--config.file={config_path}", "--log.level=warn", *args]  # fmt: skip
    env = {**env, "PYTHONPATH": str(REPO)}
    return start_process(
        name, argv, replaces="all", port=port, workdir=workdir, env=env,
        answer_timeout=answer_timeout,
    )  # fmt: skip


def wait_ready(exporter: Measured, timeout: float) -> float:
    """Wait for the first round of probes to finish; the seconds that took."""
    start = time.monotonic()

    def ready() -> bool:
        try:
            return exporter.scrape("/-/ready", timeout=10.0)[1].startswith(b"Ready")
        except (OSError, BenchError, http.client.HTTPException):
            return False

    wait_until(ready, timeout=timeout, interval=0.5, what="resilience-exporter to be ready")
    return time.monotonic() - start


def binary(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BenchError(f"{name} not found: `make bench` installs {package}")
    return found


def scrape_all(
    processes: Sequence[Measured], *, scrapes: int, rate: float, plain: bool = False
) -> float:
    """Scrape every process `scrapes` times at `rate` rounds per second, with Prometheus'
    headers (or `plain`); returns the elapsed seconds. Within a round the scrapes run one
    after the other, in an order that rotates, so that no exporter's latency includes another
    one's scrape."""
    start = time.monotonic()
    for i in range(scrapes):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        shift = i % len(processes)
        for measured in [*processes[shift:], *processes[:shift]]:
            try:
                elapsed, body = measured.scrape(plain=plain)
            except (OSError, BenchError, http.client.HTTPException):
                measured.errors += 1
                continue
            (measured.plain_latencies if plain else measured.latencies).append(elapsed)
            if not plain:
                measured.last_body = body
    return time.monotonic() - start


@dataclass
class Usage:
    cpu_seconds_per_minute: float
    rss_bytes: int


class UsageMeter:
    """CPU seconds used by each process between `start()` and `stop()`, and RSS at the end."""

    def __init__(self, processes: Sequence[Measured]) -> None:
        self.processes = processes
        self._cpu: dict[str, float] = {}
        self._at = 0.0

    def start(self) -> None:
        self._cpu = {m.name: cpu_seconds(m.pid) for m in self.processes}
        self._at = time.monotonic()

    def stop(self) -> dict[str, Usage]:
        minutes = (time.monotonic() - self._at) / 60
        return {
            m.name: Usage(
                cpu_seconds_per_minute=(cpu_seconds(m.pid) - self._cpu[m.name]) / minutes,
                rss_bytes=rss_bytes(m.pid),
            )
            for m in self.processes
        }


def latency_summary(latencies: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000,
    }


def pin(pid: int, cpus: set[int]) -> None:
    """Pin a process, every thread it has and everything it has forked so far (later
    threads and forks inherit it). Each thread is pinned on its own: the system call pins
    only the thread it names, and a process's PID names its main thread alone."""
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            for thread in proc.threads():
                with contextlib.suppress(ProcessLookupError):  # the thread has ended
                    os.sched_setaffinity(thread.id, cpus)


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()
