"""What several probes share and no single client library gives."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import TypeVar

from resilience_exporter.metrics.pool_schema import PoolTimings

T = TypeVar("T")


class ConnectObserver:
    """Sees every connection attempt a client's pool makes, which the pool itself does not
    report: a pool timeout alone cannot tell a refused connection from bad credentials.
    Successful connects are timed into `timings.connect`; failures are counted and the latest
    one kept, to explain a later pool timeout."""

    def __init__(self, timings: PoolTimings) -> None:
        self.timings = timings
        self.errors = 0
        self._last_error: tuple[float, BaseException] | None = None

    async def observe(self, connecting: Awaitable[T]) -> T:
        start = time.perf_counter()
        try:
            result = await connecting
        except BaseException as exc:
            self.errors += 1
            self._last_error = (time.monotonic(), exc)
            raise
        self.timings.connect.observe(time.perf_counter() - start)
        return result

    def error_since(self, moment: float) -> BaseException | None:
        """The latest failed attempt, if it failed after `moment` (a monotonic time)."""
        if self._last_error is not None and self._last_error[0] >= moment:
            return self._last_error[1]
        return None
