"""Reading the statistics of an application's connection pools into `PoolStats`, and
recognising which library a pool comes from."""

from __future__ import annotations

import inspect
from typing import Any, Protocol, runtime_checkable

from resilience_exporter.instrument.checkouts import CheckoutTracker
from resilience_exporter.metrics.pool_schema import PoolStats


@runtime_checkable
class PoolReader(Protocol):
    name: str

    def stats(self) -> PoolStats: ...


_WRAPPED = "__resilience_exporter_tracker__"


class PsycopgPoolReader:
    """`psycopg_pool.ConnectionPool` or `AsyncConnectionPool`, through `get_stats()` (which,
    unlike `pop_stats()`, leaves the pool's counters alone for the application).

    With a `leak_threshold`, the pool's `getconn` and `putconn` (which `pool.connection()`
    calls too) are wrapped on the instance to time acquires and holds."""

    def __init__(
        self, pool: Any, *, name: str | None = None, leak_threshold: float | None = None
    ) -> None:
        self.pool = pool
        self.name = name or str(pool.name)
        self.tracker: CheckoutTracker | None = None
        if leak_threshold is not None:
            self.tracker = CheckoutTracker(leak_threshold=leak_threshold)
            self._wrap(self.tracker)

    def _wrap(self, tracker: CheckoutTracker) -> None:
        pool = self.pool
        if getattr(vars(pool).get("getconn"), _WRAPPED, None) is not None:
            raise ValueError(f"psycopg pool {self.name!r} is tracked already")
        getconn, putconn = pool.getconn, pool.putconn
        if inspect.iscoroutinefunction(getconn):
            # psycopg_pool's signature, `timeout` included.
            async def agetconn(timeout: float | None = None) -> Any:  # noqa: ASYNC109
                with tracker.acquiring():
                    conn = await getconn(timeout)
                tracker.checked_out(conn)
                return conn

            async def aputconn(conn: Any) -> None:
                tracker.checked_in(conn)
                await putconn(conn)

            wrappers: tuple[Any, Any] = (agetconn, aputconn)
        else:

            def sgetconn(timeout: float | None = None) -> Any:
                with tracker.acquiring():
                    conn = getconn(timeout)
                tracker.checked_out(conn)
                return conn

            def sputconn(conn: Any) -> None:
                tracker.checked_in(conn)
                putconn(conn)

            wrappers = (sgetconn, sputconn)
        setattr(wrappers[0], _WRAPPED, tracker)
        # Instance attributes shadow the methods for every caller, `pool.connection()` too.
        pool.getconn, pool.putconn = wrappers

    def stats(self) -> PoolStats:
        stats: dict[str, int] = self.pool.get_stats()
        size = stats.get("pool_size", 0)
        idle = stats.get("pool_available", 0)
        result = PoolStats(
            in_use=max(size - idle, 0),
            idle=idle,
            max_size=stats.get("pool_max", self.pool.max_size),
            min_size=stats.get("pool_min", self.pool.min_size),
            pending=stats.get("requests_waiting", 0),
            connect_errors=stats.get("connections_errors", 0),
            acquire_errors=stats.get("requests_errors", 0),
            lost=stats.get("connections_lost", 0),
        )
        return result if self.tracker is None else self.tracker.snapshot().merged_into(result)


class RedisPoolReader:
    """redis-py's `ConnectionPool` and `BlockingConnectionPool`, sync or asyncio. redis-py
    has no public statistics, so this reads the same private lists its own observability
    code reads; `max_connections` is 2**31 when the application set no limit."""

    def __init__(self, pool: Any, *, name: str) -> None:
        self.pool = pool
        self.name = name

    def stats(self) -> PoolStats:
        pool = self.pool
        if hasattr(pool, "_get_in_use_connections"):  # redis-py 7.0 and later
            in_use = len(pool._get_in_use_connections())
            idle = len(pool._get_free_connections())
        elif hasattr(pool, "_in_use_connections"):  # before 7.0, and asyncio's pools
            in_use = len(pool._in_use_connections)
            idle = len(pool._available_connections)
        else:  # a blocking pool before 7.0: a queue of idle connections and placeholders (None)
            idle = sum(connection is not None for connection in list(pool.pool.queue))
            in_use = len(pool._connections) - idle
        return PoolStats(in_use=in_use, idle=idle, max_size=int(pool.max_connections))


def _from_library(obj: object, *packages: str) -> bool:
    return any(cls.__module__.split(".")[0] in packages for cls in type(obj).__mro__)


def reader_for(pool: Any, *, name: str | None, leak_threshold: float) -> PoolReader:
    """The reader for `pool`, recognised by the library its class (or a base) comes from; any
    object with a `name` and a `stats()` is a reader already."""
    if _from_library(pool, "sqlalchemy"):
        from resilience_exporter.instrument.sqlalchemy_pool import SQLAlchemyPoolReader

        return SQLAlchemyPoolReader(pool, name=name, leak_threshold=leak_threshold)
    if _from_library(pool, "asyncpg"):
        from resilience_exporter.instrument.asyncpg_pool import AsyncpgPoolReader

        return AsyncpgPoolReader(pool, name=name, leak_threshold=leak_threshold)
    if _from_library(pool, "psycopg_pool"):
        return PsycopgPoolReader(pool, name=name, leak_threshold=leak_threshold)
    if _from_library(pool, "redis"):
        if not name:
            raise ValueError("name= is required: a redis-py pool has no name")
        return RedisPoolReader(pool, name=name)
    if isinstance(pool, PoolReader):
        if name is not None and name != pool.name:
            raise ValueError(f"a PoolReader names itself ({pool.name!r}); name= cannot rename it")
        return pool
    raise TypeError(
        f"{type(pool).__module__}.{type(pool).__qualname__} is not a pool this helper knows: "
        "a SQLAlchemy Engine, AsyncEngine or QueuePool, an asyncpg Pool, a psycopg_pool pool, "
        "a redis-py ConnectionPool, or a PoolReader (a `name` and a `stats()` returning PoolStats)"
    )
