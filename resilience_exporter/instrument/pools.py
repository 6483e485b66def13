"""Reading the statistics of an application's connection pools into `PoolStats`."""

from __future__ import annotations

from typing import Any, Protocol

from resilience_exporter.pools import PoolStats


class PoolReader(Protocol):
    name: str

    def stats(self) -> PoolStats: ...


class PsycopgPoolReader:
    """`psycopg_pool.ConnectionPool` or `AsyncConnectionPool`, through `get_stats()` (which,
    unlike `pop_stats()`, leaves the pool's counters alone for the application)."""

    def __init__(self, pool: Any, *, name: str | None = None) -> None:
        self.pool = pool
        self.name = name or str(pool.name)

    def stats(self) -> PoolStats:
        stats: dict[str, int] = self.pool.get_stats()
        size = stats.get("pool_size", 0)
        idle = stats.get("pool_available", 0)
        return PoolStats(
            in_use=max(size - idle, 0),
            idle=idle,
            max_size=stats.get("pool_max", self.pool.max_size),
            min_size=stats.get("pool_min", self.pool.min_size),
            pending=stats.get("requests_waiting", 0),
            connect_errors=stats.get("connections_errors", 0),
            acquire_errors=stats.get("requests_errors", 0),
            lost=stats.get("connections_lost", 0),
        )


class RedisPoolReader:
    """redis-py's `ConnectionPool` and `BlockingConnectionPool`, sync or asyncio. redis-py
    has no public statistics, so this reads the same private lists its own observability
    code reads; `max_connections` is 2**31 when the application set no limit."""

    def __init__(self, pool: Any, *, name: str) -> None:
        self.pool = pool
        self.name = name

    def stats(self) -> PoolStats:
        pool = self.pool
        if hasattr(pool, "_get_in_use_connections"):
            in_use = len(pool._get_in_use_connections())
            idle = len(pool._get_free_connections())
        else:  # older redis-py
            in_use = len(pool._in_use_connections)
            idle = len(pool._available_connections)
        return PoolStats(in_use=in_use, idle=idle, max_size=int(pool.max_connections))
