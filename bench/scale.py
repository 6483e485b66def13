"""Scale mode: N PostgreSQL targets on one server, cost and punctuality as N grows."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.openmetrics.parser import text_string_to_metric_families
from psycopg import sql

from bench import harness
from bench.compare import MONITOR_PASSWORD, MONITOR_USER, PASSWORD_ENV
from bench.harness import ms
from scripts.testservers.postgres import PostgresServer


@dataclass(frozen=True)
class Options:
    targets: Sequence[int] = (100, 500, 1000)
    interval: float = 15.0
    cycles: int = 3
    databases: int = 100
    scrape_rate: float = 2.0
    # With two CPUs or more, the exporter gets CPU 0 to itself and PostgreSQL the others: a
    # thousand backends sharing the exporter's CPU would starve it (run queues near 100 were
    # seen), which measures the machine, not the exporter.
    pin: bool = True


def _config(pg: PostgresServer, n: int, databases: int, interval: float) -> str:
    timeout = min(5.0, interval)
    lines = [f"defaults: {{interval: {ms(interval)}, timeout: {ms(timeout)}}}", "targets:"]
    for i in range(n):
        lines += [
            f"  - name: db-{i:04d}",
            "    kind: postgres",
            f"    dsn: {pg.dsn(MONITOR_USER, dbname=f'bench_{i % databases}')}",
            "    password: ${BENCH_MONITOR_PASSWORD}",
            "    pool: {min_size: 1, max_size: 1}",
        ]
    lines += ["host:", "  enabled: false"]
    return "\n".join(lines) + "\n"


def _pinning(options: Options) -> bool:
    return options.pin and (os.cpu_count() or 1) >= 2


def _schedule(body: bytes) -> dict[str, Any]:
    """Per target (from an OpenMetrics scrape): probes counted, failures, staleness of the
    last success."""
    now = time.time()
    counts: dict[str, float] = {}
    staleness: dict[str, float] = {}
    down_reasons: Counter[str] = Counter()
    for fam in text_string_to_metric_families(body.decode()):  # type: ignore[no-untyped-call]
        for s in fam.samples:
            if s.labels.get("kind") != "postgres" or "target" not in s.labels:
                continue
            target = s.labels["target"]
            if s.name == "resilience_probe_duration_seconds_count":
                counts[target] = s.value
            elif s.name == "resilience_last_success_timestamp_seconds":
                staleness[target] = now - s.value
            elif s.name == "resilience_up" and s.value != 1.0:
                down_reasons[s.labels.get("reason") or "unknown"] += 1
    return {"counts": counts, "staleness": staleness, "down_reasons": down_reasons}


def _step(pg: PostgresServer, n: int, options: Options, workdir: Path) -> dict[str, Any]:
    timeout = min(5.0, options.interval)
    config = _config(pg, n, options.databases, options.interval)
    exporter = harness.ours(workdir, config, PASSWORD_ENV)
    if _pinning(options):
        harness.pin(exporter.pid, {0})
    try:
        seconds_to_ready = harness.wait_ready(exporter, timeout=max(120.0, n * 0.3))
        first = _schedule(exporter.scrape()[1])
        meter = harness.UsageMeter([exporter])
        meter.start()
        started = time.monotonic()
        seconds = options.cycles * options.interval
        harness.scrape_all(
            [exporter], scrapes=max(1, round(seconds * options.scrape_rate)),
            rate=options.scrape_rate,
        )  # fmt: skip
        measured = time.monotonic() - started
        usage = meter.stop()[exporter.name]
        last = _schedule(exporter.last_body)
    finally:
        exporter.process.stop()
    probes = [last["counts"][t] - first["counts"].get(t, 0) for t in last["counts"]]
    expected = measured / options.interval - 1
    down = last["down_reasons"].total()
    max_staleness = max(last["staleness"].values(), default=float("inf"))
    in_interval = (
        len(last["counts"]) == n
        and down == 0
        and min(probes) >= expected
        and max_staleness <= options.interval + timeout
    )
    return {
        "targets": n,
        "measured_seconds": measured,
        "seconds_to_ready": seconds_to_ready,
        "all_cycles_in_interval": in_interval,
        "targets_down_at_end": down,
        "targets_down_by_reason": dict(sorted(last["down_reasons"].items())),
        "probes_per_target_min": min(probes),
        "probes_per_target_max": max(probes),
        "max_staleness_seconds": max_staleness,
        "cpu_seconds_per_minute": usage.cpu_seconds_per_minute,
        "rss_bytes": usage.rss_bytes,
        "bytes_per_scrape": len(exporter.last_body),
        "scrapes": len(exporter.latencies),
        **harness.latency_summary(exporter.latencies),
    }


def run(options: Options, workdir: Path) -> dict[str, Any]:
    started = time.time()
    largest = max(options.targets)
    databases = min(options.databases, largest)
    options = Options(**{**options.__dict__, "databases": databases})
    steps = []
    with PostgresServer(max_connections=largest + 50) as pg:
        pg.create_role(MONITOR_USER, MONITOR_PASSWORD)
        if _pinning(options):
            harness.pin(pg.process.pid, set(range(1, os.cpu_count() or 1)))
        for i in range(databases):
            pg.execute(sql.SQL("CREATE DATABASE {} STRATEGY FILE_COPY").format(
                sql.Identifier(f"bench_{i}")))  # fmt: skip
        for n in options.targets:
            steps.append(_step(pg, n, options, workdir))
    return {
        "mode": "scale",
        "started_at": started,
        "duration_seconds": time.time() - started,
        "load_average_at_end": harness.load_average(),
        "cpus": os.cpu_count(),
        "interval": options.interval,
        "cycles": options.cycles,
        "databases": databases,
        "scrape_rate": options.scrape_rate,
        "pinned": _pinning(options),
        "steps": steps,
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = result["steps"]
    n = [s["targets"] for s in steps]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    panels = [
        ("CPU seconds per minute", [s["cpu_seconds_per_minute"] for s in steps]),
        ("RSS MiB", [s["rss_bytes"] / 1024 / 1024 for s in steps]),
        ("/metrics p99 ms", [s["p99_ms"] for s in steps]),
        ("max staleness of last success, s", [s["max_staleness_seconds"] for s in steps]),
    ]
    for ax, (title, values) in zip(axes.flat, panels, strict=True):
        ax.plot(n, values, marker="o")
        ax.set_title(title)
        ax.set_xlabel("targets")
        ax.grid(True, alpha=0.3)
    axes.flat[3].axhline(
        result["interval"], color="red", linestyle="--", linewidth=1, label="interval"
    )
    axes.flat[3].legend()
    fig.suptitle(f"resilience-exporter cost against targets (interval {result['interval']:g} s)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
