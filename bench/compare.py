"""Side by side in one run: resilience-exporter against the peer exporters it replaces, on the
same PostgreSQL, PgBouncer, Redis and host, at the same scrape rate."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from bench import harness
from bench.harness import Measured, UsageMeter, ms
from resilience_exporter.configuration import loader as config_module
from resilience_exporter.probes.postgres.stats import statement as postgres_statement
from resilience_exporter.probing.registry import kind_spec
from scripts.testservers.base import free_port
from scripts.testservers.postgres import PostgresServer

MONITOR_USER = "bench_monitor"
MONITOR_PASSWORD = "bench-monitor-pw"
REDIS_PASSWORD = "bench-redis-pw"
PASSWORD_ENV = {"BENCH_MONITOR_PASSWORD": MONITOR_PASSWORD, "BENCH_REDIS_PASSWORD": REDIS_PASSWORD}
PEER_KINDS = {
    "postgres_exporter": "postgres",
    "pgbouncer_exporter": "pgbouncer",
    "redis_exporter": "redis",
    "node_exporter": "host",
}


@dataclass(frozen=True)
class Options:
    scrapes: int = 300
    rate: float = 5.0  # scrapes per second, for each exporter
    steady_seconds: float = 60.0
    interval: float = 5.0  # our probe interval, and the scrape interval of the steady phase
    probe_rounds: int = 200


@dataclass
class Servers:
    postgres: PostgresServer
    pgbouncer: Any | None  # testservers.pgbouncer.PgBouncerServer, once that kind exists
    redis: Any | None  # testservers.redis.RedisServer, once that kind exists
    missing: dict[str, str]


@contextlib.contextmanager
def servers() -> Iterator[Servers]:
    with contextlib.ExitStack() as stack:
        pg = stack.enter_context(PostgresServer())
        pg.create_role(MONITOR_USER, MONITOR_PASSWORD)
        missing: dict[str, str] = {}
        bouncer = redis = None
        if harness.kind_available("pgbouncer"):
            # Imported by name: without the kind (an older checkout) the row says why it is missing.
            pgbouncer_module = importlib.import_module("scripts.testservers.pgbouncer")
            bouncer = stack.enter_context(
                pgbouncer_module.PgBouncerServer(pg, users=[(MONITOR_USER, MONITOR_PASSWORD)])
            )
        else:
            missing["pgbouncer"] = "not measured: kind not available"
        if harness.kind_available("redis"):
            redis_module = importlib.import_module("scripts.testservers.redis")
            redis = stack.enter_context(redis_module.RedisServer(password=REDIS_PASSWORD))
        else:
            missing["redis"] = "not measured: kind not available"
        yield Servers(pg, bouncer, redis, missing)


def our_config(s: Servers, interval: float) -> str:
    lines = [
        f"defaults: {{interval: {ms(interval)}, timeout: {ms(min(interval, 5.0))}}}",
        "targets:",
        "  - name: bench-postgres",
        "    kind: postgres",
        f"    dsn: {s.postgres.dsn(MONITOR_USER)}",
        "    password: ${BENCH_MONITOR_PASSWORD}",
    ]
    if s.pgbouncer is not None:
        lines += [
            "  - name: bench-pgbouncer",
            "    kind: pgbouncer",
            f"    dsn: {s.pgbouncer.dsn(MONITOR_USER)}",
            "    password: ${BENCH_MONITOR_PASSWORD}",
        ]
    if s.redis is not None:
        lines += [
            "  - name: bench-redis",
            "    kind: redis",
            f"    url: redis://127.0.0.1:{s.redis.port}/0",
            "    password: ${BENCH_REDIS_PASSWORD}",
        ]
    lines += ["host:", "  enabled: true"]
    return "\n".join(lines) + "\n"


def start_peers(s: Servers, workdir: Path) -> tuple[list[Measured], dict[str, str]]:
    """Every peer whose kind we cover in this run; the others, with why they are missing."""
    peers: list[Measured] = []
    missing = {peer: s.missing[kind] for peer, kind in PEER_KINDS.items() if kind in s.missing}
    port = free_port()
    peers.append(
        harness.start_process(
            "postgres_exporter",
            [harness.binary("prometheus-postgres-exporter", "prometheus-postgres-exporter"),
             f"--web.listen-address=127.0.0.1:{port}"],
            replaces="postgres", port=port, workdir=workdir,
            env={"DATA_SOURCE_NAME": s.postgres.dsn(MONITOR_USER, MONITOR_PASSWORD)},
            note="Debian prometheus-postgres-exporter",
        )
    )  # fmt: skip
    if s.pgbouncer is not None:
        port = free_port()
        config = workdir / "pgbouncer-exporter.yml"
        config.write_text(
            f"exporter_host: 127.0.0.1\nexporter_port: {port}\npgbouncers:\n"
            f"  - dsn: {s.pgbouncer.dsn(MONITOR_USER, '$(BENCH_MONITOR_PASSWORD)')}\n"
        )
        peers.append(
            harness.start_process(
                "pgbouncer_exporter",
                [str(harness.PEERS_VENV / "bin" / "pgbouncer-exporter"), f"--config={config}"],
                replaces="pgbouncer", port=port, workdir=workdir, env=PASSWORD_ENV,
                note="PyPI prometheus-pgbouncer-exporter (Debian's fails against PgBouncer 1.18)",
            )
        )  # fmt: skip
    if s.redis is not None:
        port = free_port()
        peers.append(
            harness.start_process(
                "redis_exporter",
                [harness.binary("prometheus-redis-exporter", "prometheus-redis-exporter"),
                 f"--redis.addr=redis://127.0.0.1:{s.redis.port}",
                 f"--web.listen-address=127.0.0.1:{port}"],
                replaces="redis", port=port, workdir=workdir,
                env={"REDIS_PASSWORD": REDIS_PASSWORD},
                note="Debian prometheus-redis-exporter",
            )
        )  # fmt: skip
    port = free_port()
    peers.append(
        harness.start_process(
            "node_exporter",
            [harness.binary("prometheus-node-exporter", "prometheus-node-exporter"),
             f"--web.listen-address=127.0.0.1:{port}", "--no-collector.systemd"],
            replaces="host", port=port, workdir=workdir,
            note="Debian prometheus-node-exporter",
        )
    )  # fmt: skip
    return peers, missing


# --- probe overhead: our probe against the floor, interleaved in the same loop -------------
# What each probe sends, in round trips, replayed bare on an open connection: it tells the
# cost of what we ask the server from the cost of our code around it. PostgreSQL's one
# statement depends on the server's version: `bare_statements()` asks the connection. A Redis
# round trip may pipeline several commands, separated by "; " (the probe sends INFO and the
# rest together).
BARE_STATEMENTS = {
    "pgbouncer": ["SHOW POOLS", "SHOW STATS", "SHOW DATABASES", "SHOW CONFIG", "SHOW LISTS"],
    "redis": ["PING", "INFO; SLOWLOG LEN; SLOWLOG GET 1; LATENCY LATEST"],
}
FLOOR_STATEMENT = {"postgres": "SELECT 1", "pgbouncer": "SHOW VERSION", "redis": "PING"}


def bare_statements(kind: str, conn: _Connection) -> list[str]:
    if kind == "postgres" and conn.pg is not None:
        return [postgres_statement(conn.pg.info.server_version)]
    return BARE_STATEMENTS[kind]


async def _overhead(s: Servers, config_path: Path, rounds: int) -> dict[str, dict[str, Any]]:
    config = config_module.load(config_path, env={**os.environ, **PASSWORD_ENV})
    results: dict[str, dict[str, Any]] = {}
    for target in config.targets:
        kind = target.kind
        probe = kind_spec(kind).create(target)
        await probe.open()
        conn = await _Connection.open(s, kind)
        bare = bare_statements(kind, conn)
        timings: dict[str, list[float]] = {"probe": [], "floor": [], "bare": []}
        steps: dict[str, Callable[[], Awaitable[Any]]] = {
            "probe": probe.probe,
            "floor": functools.partial(conn.run, [FLOOR_STATEMENT[kind]]),
            "bare": functools.partial(conn.run, bare),
        }
        try:
            for _ in range(5):  # warm up: the pool's first connection, caches
                for step in steps.values():
                    await step()
            for _ in range(rounds):
                for name, step in steps.items():
                    start = time.perf_counter()
                    await step()
                    timings[name].append(time.perf_counter() - start)
        finally:
            await probe.close()
            await conn.close()
        p50 = {k: harness.percentile(v, 0.5) * 1000 for k, v in timings.items()}
        p99 = {k: harness.percentile(v, 0.99) * 1000 for k, v in timings.items()}
        results[kind] = {
            "probe_p50_ms": p50["probe"],
            "probe_p99_ms": p99["probe"],
            "floor_query": FLOOR_STATEMENT[kind],
            "floor_p50_ms": p50["floor"],
            "floor_p99_ms": p99["floor"],
            "probe_round_trips": len(bare),
            "bare_statements_p50_ms": p50["bare"],
            "ratio_p50": p50["probe"] / p50["floor"],
            "ratio_p50_per_round_trip": p50["probe"] / p50["floor"] / len(bare),
            "ratio_p50_to_bare": p50["probe"] / p50["bare"],
        }
    return results


class _Connection:
    """An already open connection to one kind of server, to replay statements on."""

    def __init__(self, pg: psycopg.AsyncConnection[Any] | None, redis: Any | None) -> None:
        self.pg = pg
        self.redis = redis

    @classmethod
    async def open(cls, s: Servers, kind: str) -> _Connection:
        if kind == "postgres":
            dsn = s.postgres.dsn(MONITOR_USER, MONITOR_PASSWORD)
            return cls(await psycopg.AsyncConnection.connect(dsn, autocommit=True), None)
        if kind == "pgbouncer" and s.pgbouncer is not None:
            dsn = s.pgbouncer.dsn(MONITOR_USER, MONITOR_PASSWORD)
            conn = await psycopg.AsyncConnection.connect(
                dsn, autocommit=True, prepare_threshold=None
            )
            return cls(conn, None)
        if kind == "redis" and s.redis is not None:
            import redis.asyncio

            client = redis.asyncio.Redis(
                host="127.0.0.1", port=s.redis.port, password=REDIS_PASSWORD, socket_timeout=5
            )
            await client.ping()
            return cls(None, client)
        raise harness.BenchError(f"no floor for kind {kind}")

    async def run(self, statements: Sequence[str]) -> None:
        for statement in statements:
            if self.pg is not None:
                await (await self.pg.execute(statement)).fetchall()
            elif self.redis is not None and "; " in statement:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for command in statement.split("; "):
                        pipe.execute_command(*command.split())
                    await pipe.execute()
            elif self.redis is not None:
                await self.redis.execute_command(*statement.split())

    async def close(self) -> None:
        if self.pg is not None:
            await self.pg.close()
        if self.redis is not None:
            await self.redis.aclose()


# --- the run ---------------------------------------------------------------------------------
def run(options: Options, workdir: Path) -> dict[str, Any]:
    started = time.time()
    with servers() as s:
        config_text = our_config(s, options.interval)
        peers, missing = start_peers(s, workdir)
        exporter = None
        try:
            exporter = harness.ours(workdir, config_text, PASSWORD_ENV)
            harness.wait_ready(exporter, timeout=60)
            everyone = [exporter, *peers]
            for m in everyone:  # one scrape each before measuring: lazy initialisation
                m.scrape()

            meter = UsageMeter(everyone)
            meter.start()
            loaded_seconds = harness.scrape_all(
                everyone, scrapes=options.scrapes, rate=options.rate
            )
            loaded = meter.stop()
            # The extra column: the same scrapes in plain text without gzip, a fifth as many.
            harness.scrape_all(
                everyone, scrapes=max(1, options.scrapes // 5), rate=options.rate, plain=True
            )

            steady_latencies = {m.name: list(m.latencies) for m in everyone}
            meter.start()
            steady_scrapes = max(1, round(options.steady_seconds / options.interval))
            harness.scrape_all(everyone, scrapes=steady_scrapes, rate=1 / options.interval)
            time.sleep(max(0.0, options.interval - 0.5))  # let the last interval run its course
            steady = meter.stop()
            for m in everyone:
                m.latencies = steady_latencies[m.name]

            overhead = asyncio.run(
                _overhead(s, workdir / "resilience-exporter.yml", options.probe_rounds)
            )
        finally:
            for m in [*peers, *([exporter] if exporter else [])]:
                m.process.stop()
    rows = {}
    for m in everyone:
        rows[m.name] = {
            "replaces": m.replaces,
            "note": m.note,
            "scrapes": len(m.latencies),
            "scrape_errors": m.errors,
            **harness.latency_summary(m.latencies),
            "cpu_seconds_per_minute_loaded": loaded[m.name].cpu_seconds_per_minute,
            "cpu_seconds_per_minute_steady": steady[m.name].cpu_seconds_per_minute,
            "rss_bytes": steady[m.name].rss_bytes,
            "series": harness.series_count(m.last_body),
            "bytes_per_scrape": len(m.last_body),
            "wire_bytes_per_scrape": m.last_wire_bytes,
            "plain_p50_ms": harness.percentile(m.plain_latencies, 0.5) * 1000,
        }
    return {
        "mode": "compare",
        "started_at": started,
        "duration_seconds": time.time() - started,
        "load_average_at_end": harness.load_average(),
        "cpus": os.cpu_count(),
        "options": options.__dict__,
        "loaded_phase_seconds": loaded_seconds,
        "exporters": rows,
        "missing": missing,
        "probe_overhead": overhead,
        "ratios": ratios(rows),
    }


RATIO_KEYS = (
    "p50_ms", "p99_ms", "cpu_seconds_per_minute_loaded", "cpu_seconds_per_minute_steady",
    "rss_bytes", "series", "bytes_per_scrape", "plain_p50_ms",
)  # fmt: skip


def ratios(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    ours = rows["resilience-exporter"]
    peers = {name: row for name, row in rows.items() if name != "resilience-exporter"}
    result: dict[str, dict[str, float]] = {}
    for name, row in peers.items():
        result[f"ours / {name}"] = {k: ours[k] / row[k] for k in RATIO_KEYS if row[k]}
    summed = ("cpu_seconds_per_minute_loaded", "cpu_seconds_per_minute_steady", "rss_bytes",
              "series", "bytes_per_scrape")  # fmt: skip
    total = {k: sum(row[k] for row in peers.values()) for k in summed}
    result["ours / sum of peers"] = {k: ours[k] / total[k] for k in summed if total[k]}
    return result
