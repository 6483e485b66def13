"""The shared connection-pool schema: the exporter's own pools (`source="exporter"`) and,
through other sources, applications' pools all land in these families."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from resilience_exporter.metrics.families import (
    HistogramAccumulator,
    HistogramValue,
    Sample,
    family,
    sample,
)

_LABELS = ("pool", "source")

POOL_CONNECTIONS = family(
    "resilience_pool_connections",
    "Connections held by the pool, by state (idle or in_use).",
    "gauge",
    (*_LABELS, "state"),
    group="pool",
)
POOL_MAX = family(
    "resilience_pool_max_connections",
    "The most connections the pool may hold.",
    "gauge",
    _LABELS,
    group="pool",
)
POOL_MIN = family(
    "resilience_pool_min_connections",
    "The connections the pool keeps open even when idle.",
    "gauge",
    _LABELS,
    group="pool",
)
POOL_PENDING = family(
    "resilience_pool_pending_requests",
    "Requests waiting for a connection from the pool.",
    "gauge",
    _LABELS,
    group="pool",
)
POOL_ACQUIRE = family(
    "resilience_pool_acquire_duration_seconds",
    "Time spent waiting to get a connection from the pool.",
    "histogram",
    _LABELS,
    group="pool",
)
POOL_CONNECT = family(
    "resilience_pool_connect_duration_seconds",
    "Time to open a new connection to the server, for connections opened successfully.",
    "histogram",
    _LABELS,
    group="pool",
)
POOL_ERRORS = family(
    "resilience_pool_errors_total",
    "Pool failures: operation=connect (opening a server connection failed) or "
    "acquire (a request for a connection failed or timed out).",
    "counter",
    (*_LABELS, "operation"),
    group="pool",
)
POOL_LOST = family(
    "resilience_pool_connections_lost_total",
    "Connections found broken while in the pool and discarded.",
    "counter",
    _LABELS,
    group="pool",
)
POOL_OVERFLOW = family(
    "resilience_pool_overflow_connections",
    "Connections open beyond the pool's persistent size (SQLAlchemy's overflow); they are "
    "closed when returned.",
    "gauge",
    _LABELS,
    group="pool",
)
POOL_HOLD = family(
    "resilience_pool_hold_duration_seconds",
    "How long connections stayed checked out of the pool, observed when they were returned.",
    "histogram",
    _LABELS,
    group="pool",
)
POOL_LONG_HELD = family(
    "resilience_pool_long_held_connections",
    "Connections checked out now for longer than the pool's leak threshold: likely leaks.",
    "gauge",
    _LABELS,
    group="pool",
)
POOL_LEAK_THRESHOLD = family(
    "resilience_pool_leak_threshold_seconds",
    "How long a connection may stay checked out before it counts as long-held.",
    "gauge",
    _LABELS,
    group="pool",
)
POOL_OLDEST_CHECKOUT = family(
    "resilience_pool_oldest_checkout_age_seconds",
    "How long the connection checked out the longest ago has been out (0 when none is).",
    "gauge",
    _LABELS,
    group="pool",
)

# Hold times: from a quick query (a millisecond) to a connection forgotten for a quarter of an
# hour; the default leak threshold (30 s) is a bound.
HOLD_BUCKETS: tuple[float, ...] = (
    0.001,
    0.005,
    0.01,
    0.05,
    0.1,
    0.5,
    1.0,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
)


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
    overflow: int | None = None
    # Measured by an instrumented application around its own checkouts.
    acquire: HistogramValue | None = None
    connect: HistogramValue | None = None
    hold: HistogramValue | None = None
    long_held: int | None = None
    leak_threshold: float | None = None
    oldest_checkout_age: float | None = None


@dataclass
class PoolTimings:
    """Acquire and connect latencies, measured by the exporter around its own pool calls."""

    acquire: HistogramAccumulator = field(default_factory=HistogramAccumulator)
    connect: HistogramAccumulator = field(default_factory=HistogramAccumulator)
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
    for fam, value in (
        (POOL_LOST, stats.lost),
        (POOL_OVERFLOW, stats.overflow),
        (POOL_ACQUIRE, stats.acquire),
        (POOL_CONNECT, stats.connect),
        (POOL_HOLD, stats.hold),
        (POOL_LONG_HELD, stats.long_held),
        (POOL_LEAK_THRESHOLD, stats.leak_threshold),
        (POOL_OLDEST_CHECKOUT, stats.oldest_checkout_age),
    ):
        if value is not None:
            out.append(sample(fam, value, pool=pool, source=source))
    if timings is not None:
        out.append(sample(POOL_ACQUIRE, timings.acquire.value(), pool=pool, source=source))
        out.append(sample(POOL_CONNECT, timings.connect.value(), pool=pool, source=source))
    return out
