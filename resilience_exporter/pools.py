"""The shared connection-pool schema: the exporter's own pools (`source="exporter"`) and,
through other sources, applications' pools all land in these families."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from resilience_exporter.families import (
    HistogramAccumulator,
    Sample,
    SummaryAccumulator,
    family,
    sample,
)

_LABELS = ("pool", "source")

POOL_CONNECTIONS = family(
    "resilience_pool_connections",
    "Connections held by the pool, by state (idle or in_use).",
    "gauge", (*_LABELS, "state"), group="pool",
)  # fmt: skip
POOL_MAX = family(
    "resilience_pool_max_connections",
    "The most connections the pool may hold.",
    "gauge", _LABELS, group="pool",
)  # fmt: skip
POOL_MIN = family(
    "resilience_pool_min_connections",
    "The connections the pool keeps open even when idle.",
    "gauge", _LABELS, group="pool",
)  # fmt: skip
POOL_PENDING = family(
    "resilience_pool_pending_requests",
    "Requests waiting for a connection from the pool.",
    "gauge", _LABELS, group="pool",
)  # fmt: skip
POOL_ACQUIRE = family(
    "resilience_pool_acquire_duration_seconds",
    "Time spent waiting to get a connection from the pool.",
    "histogram", _LABELS, group="pool",
)  # fmt: skip
POOL_CONNECT = family(
    "resilience_pool_connect_duration_seconds",
    "Time to open a new connection to the server, for connections opened successfully "
    "(count and sum: rate(sum) / rate(count) is the mean).",
    "summary", _LABELS, group="pool",
)  # fmt: skip
POOL_ERRORS = family(
    "resilience_pool_errors_total",
    "Pool failures: operation=connect (opening a server connection failed) or "
    "acquire (a request for a connection failed or timed out).",
    "counter", (*_LABELS, "operation"), group="pool",
)  # fmt: skip
POOL_LOST = family(
    "resilience_pool_connections_lost_total",
    "Connections found broken while in the pool and discarded.",
    "counter", _LABELS, group="pool",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A point-in-time view of one pool, whatever library it came from."""

    in_use: int
    idle: int
    max_size: int
    min_size: int | None = None
    pending: int | None = None
    connect_errors: int | None = None
    acquire_errors: int | None = None
    lost: int | None = None


@dataclass
class PoolTimings:
    """Acquire and connect latencies, measured by the exporter around its own pool calls."""

    acquire: HistogramAccumulator = field(default_factory=HistogramAccumulator)
    connect: SummaryAccumulator = field(default_factory=SummaryAccumulator)
    acquire_failures: int = 0

    @contextmanager
    def timing_acquire(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            self.acquire_failures += 1
            raise
        self.acquire.observe(time.perf_counter() - start)


def pool_samples(
    pool: str, source: str, stats: PoolStats, timings: PoolTimings | None = None
) -> list[Sample]:
    out = [
        sample(POOL_CONNECTIONS, stats.in_use, pool=pool, source=source, state="in_use"),
        sample(POOL_CONNECTIONS, stats.idle, pool=pool, source=source, state="idle"),
        sample(POOL_MAX, stats.max_size, pool=pool, source=source),
    ]
    if stats.min_size is not None:
        out.append(sample(POOL_MIN, stats.min_size, pool=pool, source=source))
    if stats.pending is not None:
        out.append(sample(POOL_PENDING, stats.pending, pool=pool, source=source))
    for operation, count in (("connect", stats.connect_errors), ("acquire", stats.acquire_errors)):
        if count is not None:
            out.append(sample(POOL_ERRORS, count, pool=pool, source=source, operation=operation))
    if stats.lost is not None:
        out.append(sample(POOL_LOST, stats.lost, pool=pool, source=source))
    if timings is not None:
        out.append(sample(POOL_ACQUIRE, timings.acquire.value(), pool=pool, source=source))
        out.append(sample(POOL_CONNECT, timings.connect.value(), pool=pool, source=source))
    return out
