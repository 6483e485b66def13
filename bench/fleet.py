"""Fleet mode: thousands of targets scraped by a real Prometheus, as in production.

Mostly Redis targets (each with its own pool, spread over a few Redis servers: cheap to serve
on a 2-core machine) plus PostgreSQL ones, probed every `interval`, scraped by Debian's
Prometheus every `interval` with a 10 s timeout (it sends its own Accept and Accept-Encoding
headers), plus a client scraping `extra_scrape_rate` times a second with the same headers.
With `shards` > 1 the targets are spread over that many exporter processes by
`--shard.index` / `--shard.count`, all scraped by the same Prometheus.

Reported: Prometheus' own `scrape_duration_seconds` of every scrape, the extra client's
latencies, each exporter's CPU and RSS over time, every target's staleness (seconds since
its last successful probe, as Prometheus last saw it), and the cost per target.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import harness
from bench.compare import MONITOR_PASSWORD, MONITOR_USER, PASSWORD_ENV
from bench.harness import Measured, ms
from scripts.testservers.postgres import PostgresServer
from scripts.testservers.prometheus import PrometheusServer
from scripts.testservers.redis import RedisServer

JOB = "resilience-fleet"
# Each Redis server takes this many targets' connections at most.
TARGETS_PER_REDIS = 1250


@dataclass(frozen=True)
class Options:
    targets: int = 2000
    postgres_targets: int = 100
    shards: int = 1
    interval: float = 15.0
    minutes: float = 5.0
    extra_scrape_rate: float = 2.0
    # One exporter process gets CPU 0, the servers and Prometheus the others ("on one core");
    # shards are left free to use every CPU.
    pin: bool = True
    sample_every: float = 5.0


@dataclass
class Sampled:
    """An exporter's CPU and RSS, sampled over the measured window."""

    times: list[float] = field(default_factory=list)
    rss_bytes: list[int] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)


def _config(redis: Sequence[RedisServer], pg: PostgresServer, options: Options) -> str:
    timeout = min(5.0, options.interval)
    lines = [f"defaults: {{interval: {ms(options.interval)}, timeout: {ms(timeout)}}}", "targets:"]
    for i in range(options.targets - options.postgres_targets):
        server = redis[i % len(redis)]
        lines.append(
            f"  - {{name: redis-{i:05d}, kind: redis, url: 'redis://127.0.0.1:{server.port}/"
            f"{i % 16}', pool: {{max_connections: 1}}}}"
        )
    for i in range(options.postgres_targets):
        lines.append(
            f"  - {{name: pg-{i:05d}, kind: postgres, dsn: '{pg.dsn(MONITOR_USER)}', "
            "password: '${BENCH_MONITOR_PASSWORD}', pool: {min_size: 1, max_size: 1}}"
        )
    lines += ["host:", "  enabled: false"]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _servers(options: Options) -> Iterator[tuple[list[RedisServer], PostgresServer]]:
    with contextlib.ExitStack() as stack:
        count = max(1, -(-(options.targets - options.postgres_targets) // TARGETS_PER_REDIS))
        redis = [
            stack.enter_context(RedisServer(maxclients=TARGETS_PER_REDIS + 100))
            for _ in range(count)
        ]
        pg = stack.enter_context(PostgresServer(max_connections=options.postgres_targets + 50))
        pg.create_role(MONITOR_USER, MONITOR_PASSWORD)
        yield redis, pg


def _exporters(config: str, options: Options, workdir: Path) -> list[Measured]:
    """Every shard started at once, then each waited for: each reads the whole fleet's
    configuration before it listens."""
    started: list[Measured] = []
    try:
        for index in range(options.shards):
            shard_dir = workdir / f"shard-{index}"
            shard_dir.mkdir()
            started.append(
                harness.ours(
                    shard_dir,
                    config,
                    PASSWORD_ENV,
                    args=[f"--shard.index={index}", f"--shard.count={options.shards}"],
                    name=f"resilience-exporter-{index}",
                    answer_timeout=None,
                )
            )
        for exporter in started:
            harness.wait_answering(exporter, timeout=max(60.0, options.targets * 0.03))
    except BaseException:
        for exporter in started:
            exporter.process.stop()
        raise
    return started


def _pin(exporters: Sequence[Measured], servers: Sequence[int]) -> bool:
    if (os.cpu_count() or 1) < 2:
        return False
    for exporter in exporters:
        harness.pin(exporter.pid, {0})
    others = set(range(1, os.cpu_count() or 2))
    for pid in servers:
        harness.pin(pid, others)
    return True


def _values(result: list[Any], *, skip: int = 0) -> list[float]:
    """Every value of a range query's series, leaving out each series' first `skip`."""
    return [float(value) for series in result for _, value in series["values"][skip:]]


def run(options: Options, workdir: Path) -> dict[str, Any]:
    started_at = time.time()
    with _servers(options) as (redis, pg):
        config = _config(redis, pg, options)
        exporters = _exporters(config, options, workdir)
        try:
            seconds_to_ready = max(
                harness.wait_ready(e, timeout=max(180.0, options.targets * 0.2)) for e in exporters
            )
            with PrometheusServer(
                scrape={JOB: [f"127.0.0.1:{e.port}" for e in exporters]},
                scrape_interval=f"{options.interval:g}s",
                scrape_timeout=f"{min(10.0, options.interval):g}s",
                evaluation_interval=f"{options.interval:g}s",
            ) as prometheus:
                server_pids = [r.process.pid for r in redis]
                server_pids += [pg.process.pid, prometheus.process.pid]
                pinned = options.pin and options.shards == 1 and _pin(exporters, server_pids)
                result = _measure(options, exporters, prometheus)
        finally:
            for exporter in exporters:
                exporter.process.stop()
    return {
        "mode": "fleet",
        "started_at": started_at,
        "duration_seconds": time.time() - started_at,
        "load_average_at_end": harness.load_average(),
        "cpus": os.cpu_count(),
        "options": options.__dict__,
        "redis_servers": len(redis),
        "pinned": pinned,
        "seconds_to_ready": seconds_to_ready,
        **result,
    }


def _watch(
    options: Options, exporters: Sequence[Measured]
) -> tuple[dict[str, Sampled], float, float]:
    """Over the measured window: each exporter's RSS and CPU every `sample_every` seconds,
    and the extra client's scrapes, round robin; returns the samples and the window."""
    sampled = {e.name: Sampled() for e in exporters}
    start = time.time()
    deadline = start + options.minutes * 60
    next_sample = next_scrape = start
    scrapes = 0
    while (now := time.time()) < deadline:
        if now >= next_sample:
            for e in exporters:
                sampled[e.name].times.append(now - start)
                sampled[e.name].rss_bytes.append(harness.rss_bytes(e.pid))
                sampled[e.name].cpu_seconds.append(harness.cpu_seconds(e.pid))
            next_sample += options.sample_every
        if now >= next_scrape:
            exporter = exporters[scrapes % len(exporters)]
            scrapes += 1
            try:
                latency, _ = exporter.scrape(timeout=30.0)
                exporter.latencies.append(latency)
            except (OSError, harness.BenchError):
                exporter.errors += 1
            next_scrape += 1 / options.extra_scrape_rate
        time.sleep(max(0.0, min(next_sample, next_scrape) - time.time()))
    return sampled, start, time.time()


def _per_exporter(
    exporters: Sequence[Measured], sampled: dict[str, Sampled]
) -> dict[str, dict[str, Any]]:
    per_exporter: dict[str, dict[str, Any]] = {}
    for e in exporters:
        s = sampled[e.name]
        cores = (s.cpu_seconds[-1] - s.cpu_seconds[0]) / max(s.times[-1] - s.times[0], 1e-9)
        per_exporter[e.name] = {
            "cores": cores,
            "rss_bytes_start": s.rss_bytes[0],
            "rss_bytes_end": s.rss_bytes[-1],
            "rss_bytes_max": max(s.rss_bytes),
            "extra_scrapes": len(e.latencies),
            "extra_scrape_errors": e.errors,
            **(harness.latency_summary(e.latencies) if e.latencies else {}),
            "series": s.__dict__,
        }
    return per_exporter


def _measure(
    options: Options, exporters: Sequence[Measured], prometheus: PrometheusServer
) -> dict[str, Any]:
    sampled, start, end = _watch(options, exporters)
    step = options.interval
    scrape_durations = prometheus.query_range(
        f'scrape_duration_seconds{{job="{JOB}"}}', start=start, end=end, step=step
    )
    durations = _values(scrape_durations)
    # A target's first scrapes make its series in Prometheus' head, which costs more than
    # appending to them.
    steady_durations = _values(scrape_durations, skip=2)
    ups = _values(prometheus.query_range(f'up{{job="{JOB}"}}', start=start, end=end, step=step))
    # A target's staleness: how old its last success was when Prometheus scraped it (the
    # series' own timestamp minus its value), over every scrape of the window.
    last = "resilience_last_success_timestamp_seconds"
    age = f"timestamp({last}) - {last}"
    staleness = _values(prometheus.query_range(age, start=start, end=end, step=step))
    targets_up = prometheus.query("count(resilience_up == 1)")
    down = prometheus.query("count by (kind, reason) (resilience_up == 0)")
    samples_scraped = _values(
        prometheus.query_range(
            f'scrape_samples_scraped{{job="{JOB}"}}', start=end - step, end=end, step=step
        )
    )
    timeout = min(5.0, options.interval)
    per_exporter = _per_exporter(exporters, sampled)
    total_cores = sum(r["cores"] for r in per_exporter.values())
    total_rss = sum(r["rss_bytes_end"] for r in per_exporter.values())
    all_latencies = [latency for e in exporters for latency in e.latencies]
    return {
        "measured_seconds": end - start,
        "prometheus_scrapes": len(durations),
        "prometheus_scrape_seconds": {
            "p50": statistics.median(durations),
            "p99": harness.percentile(durations, 0.99),
            "max": max(durations),
            "max_after_two_scrapes": max(steady_durations, default=0.0),
        },
        "prometheus_scrapes_failed": sum(1 for value in ups if value != 1.0),
        "samples_per_scrape": max(samples_scraped, default=0),
        "extra_scrape_ms": harness.latency_summary(all_latencies),
        "targets_seen": len(prometheus.query("max by (target) (resilience_up)")),
        "targets_up": int(float(targets_up[0]["value"][1])) if targets_up else 0,
        "targets_down_by_kind_and_reason": {
            f"{r['metric'].get('kind', '')}/{r['metric'].get('reason', '')}": int(
                float(r["value"][1])
            )
            for r in down
        },
        "staleness_seconds": {
            "p50": statistics.median(staleness),
            "max": max(staleness),
            "stale_samples": sum(1 for age in staleness if age > options.interval + timeout),
            "samples": len(staleness),
        },
        "cores": total_cores,
        "rss_bytes": total_rss,
        "cpu_ms_per_target_per_minute": total_cores * 60_000 / options.targets,
        "rss_kib_per_target": total_rss / 1024 / options.targets,
        "exporters": per_exporter,
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (rss_ax, cpu_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for name, row in result["exporters"].items():
        series = row["series"]
        times = series["times"]
        rss_ax.plot(times, [b / 2**20 for b in series["rss_bytes"]], label=name)
        cpu = series["cpu_seconds"]
        rates = [(cpu[i] - cpu[i - 1]) / (times[i] - times[i - 1]) for i in range(1, len(times))]
        cpu_ax.plot(times[1:], rates, label=name)
    o = result["options"]
    title = f"{o['targets']} targets, {o['shards']} process(es), interval {o['interval']:g} s"
    rss_ax.set(title=f"RSS ({title})", xlabel="seconds", ylabel="MiB")
    cpu_ax.set(title="CPU", xlabel="seconds", ylabel="cores")
    for ax in (rss_ax, cpu_ax):
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
    if len(result["exporters"]) > 1:
        rss_ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
