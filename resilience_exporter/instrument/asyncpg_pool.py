"""asyncpg's `Pool`: sizes from its public getters, checkouts from a subclass.

asyncpg has no hooks an existing pool can be given (its `setup`/`reset` callbacks are fixed at
creation and cannot time the wait), and its `Pool` has `__slots__`, so methods cannot be
replaced on the instance. The pool's class is therefore swapped for a subclass with no state
of its own that times `_acquire` (what both `await pool.acquire()` and
`async with pool.acquire()` run) and sees `release`. Everything else is asyncpg's.
"""

from __future__ import annotations

from typing import Any

from resilience_exporter.instrument.checkouts import CheckoutTracker
from resilience_exporter.metrics.pool_schema import PoolStats

_TRACKED = "__resilience_exporter_tracker__"


def _still_out(proxy: Any) -> bool:
    # A released proxy is detached from its connection, however it came back (released, or
    # closed while checked out).
    return getattr(proxy, "_con", None) is not None


class AsyncpgPoolReader:
    def __init__(self, pool: Any, *, name: str | None, leak_threshold: float) -> None:
        import asyncpg.pool

        if not isinstance(pool, asyncpg.pool.Pool):
            raise TypeError(f"not an asyncpg Pool: {pool!r}")
        if getattr(type(pool), _TRACKED, None) is not None:
            raise ValueError("this asyncpg pool is tracked already")
        if not name:
            raise ValueError("name= is required: an asyncpg pool has no name")
        self.name = name
        self.pool = pool
        self.tracker = tracker = CheckoutTracker(leak_threshold=leak_threshold)
        base: type[asyncpg.pool.Pool[Any]] = type(pool)

        class TrackedPool(base):  # type: ignore[valid-type,misc]
            __slots__ = ()

            # The signatures are asyncpg's, `timeout` included.
            async def _acquire(self, timeout: float | None) -> Any:  # noqa: ASYNC109
                with tracker.acquiring():
                    proxy = await base._acquire(self, timeout)  # type: ignore[attr-defined]
                tracker.checked_out(proxy)
                return proxy

            async def release(
                self,
                connection: Any,
                *,
                timeout: float | None = None,  # noqa: ASYNC109
            ) -> None:
                tracker.checked_in(connection)
                await base.release(self, connection, timeout=timeout)

        setattr(TrackedPool, _TRACKED, tracker)
        TrackedPool.__name__ = TrackedPool.__qualname__ = base.__name__
        pool.__class__ = TrackedPool

    def stats(self) -> PoolStats:
        pool = self.pool
        self.tracker.forget_unless(_still_out)
        size, idle = int(pool.get_size()), int(pool.get_idle_size())
        stats = PoolStats(
            in_use=max(size - idle, 0),
            idle=idle,
            max_size=int(pool.get_max_size()),
            min_size=int(pool.get_min_size()),
        )
        return self.tracker.snapshot().merged_into(stats)
