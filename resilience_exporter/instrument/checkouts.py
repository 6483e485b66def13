"""What an application's pool does with its connections, seen from around its checkouts: how
long getting one takes, how many requests are waiting, how long each is held, and which have
been out for longer than the leak threshold.

Readers call `acquiring()` around the library's own acquire, `checked_out(key)` /
`checked_in(key)` when a connection leaves and comes back (the key is whatever identifies the
connection for that library), and merge `snapshot()` into their `PoolStats`.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from resilience_exporter.metrics.families import HistogramAccumulator, HistogramValue
from resilience_exporter.metrics.pool_schema import HOLD_BUCKETS, PoolStats

DEFAULT_LEAK_THRESHOLD = 30.0


@dataclass(frozen=True, slots=True)
class CheckoutSnapshot:
    pending: int
    acquire_errors: int
    acquire: HistogramValue
    hold: HistogramValue
    long_held: int
    leak_threshold: float
    oldest_checkout_age: float

    def merged_into(self, stats: PoolStats) -> PoolStats:
        """`stats` with what the checkouts showed; the library's own count of waiting
        requests or failed acquires, where it keeps one, wins."""
        return dataclasses.replace(
            stats,
            pending=self.pending if stats.pending is None else stats.pending,
            acquire_errors=(
                self.acquire_errors if stats.acquire_errors is None else stats.acquire_errors
            ),
            acquire=self.acquire,
            hold=self.hold,
            long_held=self.long_held,
            leak_threshold=self.leak_threshold,
            oldest_checkout_age=self.oldest_checkout_age,
        )


class CheckoutTracker:
    """Thread-safe; the lock is only held to update counters, never across a library call,
    so it is as safe in asyncio code as in threads. The checked-out map holds one entry per
    connection out now, so it is bounded by the pool's size."""

    def __init__(self, *, leak_threshold: float = DEFAULT_LEAK_THRESHOLD) -> None:
        if leak_threshold <= 0:
            raise ValueError("leak_threshold must be a positive number of seconds")
        self.leak_threshold = float(leak_threshold)
        self._lock = threading.Lock()
        self._pending = 0
        self._acquire_errors = 0
        self._acquire = HistogramAccumulator()
        self._hold = HistogramAccumulator(HOLD_BUCKETS)
        self._out: dict[Hashable, float] = {}

    # Acquiring

    def acquire_started(self) -> float:
        with self._lock:
            self._pending += 1
        return time.monotonic()

    def acquire_finished(self, started: float, error: BaseException | None) -> None:
        """A request given up by its caller (cancelled) is no longer pending, but neither a
        failed acquire nor a measured one."""
        elapsed = time.monotonic() - started
        with self._lock:
            self._pending -= 1
            if error is None:
                self._acquire.observe(elapsed)
            elif isinstance(error, Exception):
                self._acquire_errors += 1

    @contextmanager
    def acquiring(self) -> Iterator[None]:
        """Around the library's acquire, synchronous or awaited inside the block."""
        started = self.acquire_started()
        try:
            yield
        except BaseException as error:
            self.acquire_finished(started, error)
            raise
        self.acquire_finished(started, None)

    # Holding

    def checked_out(self, key: Hashable) -> None:
        now = time.monotonic()
        with self._lock:
            self._out[key] = now

    def checked_in(self, key: Hashable) -> None:
        now = time.monotonic()
        with self._lock:
            since = self._out.pop(key, None)
            if since is not None:
                self._hold.observe(now - since)

    def forget(self, key: Hashable) -> None:
        """The connection left the pool for good (detached) without being returned."""
        with self._lock:
            self._out.pop(key, None)

    def forget_unless(self, still_out: Callable[[Hashable], bool]) -> None:
        """Drop the connections the library has taken back by a path no hook sees (e.g. a
        connection that closed while checked out)."""
        with self._lock:
            keys = list(self._out)
        gone = [key for key in keys if not still_out(key)]
        with self._lock:
            for key in gone:
                self._out.pop(key, None)

    def snapshot(self) -> CheckoutSnapshot:
        now = time.monotonic()
        with self._lock:
            ages = [now - since for since in self._out.values()]
            return CheckoutSnapshot(
                pending=self._pending,
                acquire_errors=self._acquire_errors,
                acquire=self._acquire.value(),
                hold=self._hold.value(),
                long_held=sum(age > self.leak_threshold for age in ages),
                leak_threshold=self.leak_threshold,
                oldest_checkout_age=max(ages, default=0.0),
            )
