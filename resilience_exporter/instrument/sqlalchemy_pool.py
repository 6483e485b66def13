"""SQLAlchemy's `QueuePool` (sync engines) and `AsyncAdaptedQueuePool` (`AsyncEngine`), read
through the pool's own counters and its events.

- Sizes: `checkedout()` in use, `checkedin()` idle, `size()` + overflow limit as the maximum,
  `overflow()` (above zero) as the overflow connections open now.
- Events: `checkout`/`checkin` time how long each connection is held (and find the ones held
  past the leak threshold), `detach` forgets a connection that leaves the pool,
  `invalidate` and `soft_invalidate` count connections discarded (`lost`). Given an engine,
  its `do_connect`/`connect` events time new connections and `handle_error` counts the
  connects that fail.
- SQLAlchemy has no event before a checkout, so the pool's `connect` (what `engine.connect()`
  calls) is wrapped to time acquires and count the requests waiting in it. The events follow
  the engine across `engine.dispose()`; the wrapper is put on the new pool at its first
  checkout, so that one acquire goes untimed.
"""

from __future__ import annotations

import contextvars
import threading
import time
from typing import TYPE_CHECKING, Any

from resilience_exporter.instrument.checkouts import CheckoutTracker
from resilience_exporter.metrics.families import HistogramAccumulator
from resilience_exporter.metrics.pool_schema import PoolStats

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import Pool

# SQLAlchemy's own way of saying "no limit" is an overflow of -1; the schema needs a number,
# and redis-py's unlimited pools report 2**31 too.
UNLIMITED = 2**31
_WRAPPED = "__resilience_exporter_tracker__"
_connect_started: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "sqlalchemy_connect_started", default=None
)


def _is_async_engine(target: object) -> bool:
    # Without importing sqlalchemy.ext.asyncio, which needs greenlet: a sync-only
    # application may not have it.
    return any(
        cls.__name__ == "AsyncEngine" and cls.__module__.startswith("sqlalchemy.ext.asyncio")
        for cls in type(target).__mro__
    )


class SQLAlchemyPoolReader:
    def __init__(self, target: Any, *, name: str | None, leak_threshold: float) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine
        from sqlalchemy.pool import Pool, QueuePool

        engine: Engine | None = None
        if _is_async_engine(target):
            engine = target.sync_engine
        elif isinstance(target, Engine):
            engine = target
        elif not isinstance(target, Pool):
            raise TypeError(f"not a SQLAlchemy Engine, AsyncEngine or Pool: {target!r}")
        pool = engine.pool if engine is not None else target
        if not isinstance(pool, QueuePool):
            raise TypeError(
                f"{type(pool).__name__} is not supported: only QueuePool and "
                "AsyncAdaptedQueuePool (SQLAlchemy's defaults) keep a pool to observe"
            )
        if name is None:
            name = engine.url.database if engine is not None else None
            if not name:
                raise ValueError("name= is required: the pool's engine names no database")
        self.name = name
        self.tracker = CheckoutTracker(leak_threshold=leak_threshold)
        self._engine = engine
        self._pool: Pool = pool
        self._lock = threading.Lock()
        self._lost = 0
        self._connect_errors = 0
        self._connect = HistogramAccumulator()
        self._wrap(pool)
        # Pool events registered on the engine follow it to the pool `dispose()` makes.
        events_on: Engine | Pool = engine if engine is not None else pool
        event.listen(events_on, "checkout", self._checked_out)
        event.listen(events_on, "checkin", self._checked_in)
        event.listen(events_on, "detach", self._detached)
        event.listen(events_on, "invalidate", self._invalidated)
        event.listen(events_on, "soft_invalidate", self._invalidated)
        if engine is not None:
            event.listen(engine, "do_connect", self._connecting)
            event.listen(events_on, "connect", self._connected)
            event.listen(engine, "handle_error", self._failed)

    def _current_pool(self) -> Pool:
        if self._engine is None or self._engine.pool is self._pool:
            return self._pool
        with self._lock:  # two threads may meet the new pool at once: wrap it once
            if self._engine.pool is not self._pool:
                self._pool = self._engine.pool
                self._wrap(self._pool)
            return self._pool

    def _wrap(self, pool: Pool) -> None:
        already = getattr(vars(pool).get("connect"), _WRAPPED, None)
        if already is self.tracker:
            return
        if already is not None:
            raise ValueError("this SQLAlchemy pool is tracked already")
        original = pool.connect
        tracker = self.tracker

        def connect() -> Any:
            with tracker.acquiring():
                return original()

        setattr(connect, _WRAPPED, tracker)
        # An instance attribute shadows the method for the engine, which calls pool.connect().
        setattr(pool, "connect", connect)  # noqa: B010

    # Event handlers: SQLAlchemy calls them with positional arguments.

    def _checked_out(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        self._current_pool()
        self.tracker.checked_out(record)

    def _checked_in(self, dbapi_connection: Any, record: Any) -> None:
        self.tracker.checked_in(record)

    def _detached(self, dbapi_connection: Any, record: Any) -> None:
        self.tracker.forget(record)

    def _invalidated(self, dbapi_connection: Any, record: Any, exception: Any) -> None:
        with self._lock:
            self._lost += 1

    def _connecting(self, dialect: Any, record: Any, cargs: Any, cparams: Any) -> None:
        _connect_started.set(time.monotonic())

    def _connected(self, dbapi_connection: Any, record: Any) -> None:
        started = _connect_started.get()
        if started is None:
            return
        _connect_started.set(None)
        with self._lock:
            self._connect.observe(time.monotonic() - started)

    def _failed(self, context: Any) -> None:
        # No connection yet and not a pre-ping: opening the connection failed.
        if context.connection is None and not context.is_pre_ping:
            with self._lock:
                self._connect_errors += 1

    def stats(self) -> PoolStats:
        pool: Any = self._current_pool()
        max_overflow = int(pool._max_overflow)  # no public accessor
        size = int(pool.size())
        with self._lock:
            lost, connect_errors = self._lost, self._connect_errors
            connect = self._connect.value() if self._engine is not None else None
        stats = PoolStats(
            in_use=max(int(pool.checkedout()), 0),
            idle=int(pool.checkedin()),
            max_size=size + max_overflow if max_overflow >= 0 else UNLIMITED,
            overflow=max(int(pool.overflow()), 0),
            lost=lost,
            connect_errors=connect_errors if self._engine is not None else None,
            connect=connect,
        )
        return self.tracker.snapshot().merged_into(stats)
