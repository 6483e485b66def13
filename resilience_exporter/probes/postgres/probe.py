"""The PostgreSQL target's configuration and its probe: one round trip through the
exporter's own psycopg pool, the pool's stats, and the samples of the server's answer
(`stats`).

The monitoring role needs `pg_monitor` (or `pg_read_all_stats`) to see the state of other
roles' sessions; without it their state reads as `unknown`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal, Self

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from pydantic import Field, model_validator

from resilience_exporter.classify.psycopg_errors import classify_postgres
from resilience_exporter.configuration.secrets import PasswordSource
from resilience_exporter.configuration.targets import PoolConfig, TargetConfig
from resilience_exporter.metrics.families import Sample
from resilience_exporter.metrics.pool_schema import PoolStats, PoolTimings, pool_samples
from resilience_exporter.probes._common import ConnectObserver
from resilience_exporter.probes._libpq import connection_kwargs, endpoint, password_out_of_dsn
from resilience_exporter.probes.postgres.stats import samples, statement
from resilience_exporter.reasons import Failure


class PostgresTarget(TargetConfig, PasswordSource):
    kind: Literal["postgres"]
    dsn: str = Field(min_length=1)
    pool: PoolConfig = Field(default_factory=PoolConfig)

    @model_validator(mode="before")
    @classmethod
    def _password_out_of_dsn(cls, data: Any) -> Any:
        return password_out_of_dsn(data)

    def describe(self) -> str:
        dbname = conninfo_to_dict(self.dsn).get("dbname", "")
        return f"postgres {endpoint(self.dsn, default_port='5432')}/{dbname}"


def _observed_connection_class(
    observer: ConnectObserver,
) -> type[psycopg.AsyncConnection[TupleRow]]:
    class ObservedConnection(psycopg.AsyncConnection[TupleRow]):
        @classmethod
        async def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
            return await observer.observe(super().connect(conninfo, **kwargs))

    return ObservedConnection


_Pool = AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]]
# Cumulative pool statistics, carried over from closed pools so the counters never go back.
_CUMULATIVE_STATS = ("connections_errors", "connections_lost")


class PostgresProbe:
    """`close()` then `open()` again works (the breaker does so while open): psycopg_pool
    pools cannot be reopened, so `open()` makes a fresh one; timings and counters go on."""

    def __init__(self, target: PostgresTarget) -> None:
        self.target = target
        self.timings = PoolTimings()
        self._observer = ConnectObserver(self.timings)
        self._started = time.monotonic()
        self._closed_pools_stats = dict.fromkeys(_CUMULATIVE_STATS, 0)
        self.pool: _Pool = self._new_pool()

    def _new_pool(self) -> _Pool:
        timeout = self.target.timeout_seconds
        return AsyncConnectionPool(
            self.target.dsn,
            open=False,
            name=self.target.name,
            min_size=self.target.pool.min_size,
            max_size=self.target.pool.max_size,
            timeout=timeout,
            # Give up reconnecting quickly: the next probe asks again, so a long outage does
            # not leave the pool in a long back-off after the server is back.
            reconnect_timeout=timeout,
            connection_class=_observed_connection_class(self._observer),
            kwargs=self._connection_kwargs,
        )

    def _connection_kwargs(self) -> dict[str, Any]:
        timeout = self.target.timeout_seconds
        kwargs = connection_kwargs(
            timeout=timeout,
            application_name="resilience-exporter",
            password=self.target.resolve_password(),
        )
        # If the exporter is cancelled mid-query, the server gives up too.
        kwargs["options"] = f"-c statement_timeout={int(timeout * 1000)}"
        return kwargs

    async def open(self) -> None:
        if self.pool.closed:  # never opened, or closed by the breaker: a pool is single-use
            stats = self.pool.get_stats()
            for key in _CUMULATIVE_STATS:
                self._closed_pools_stats[key] += stats.get(key, 0)
            self.pool = self._new_pool()
        await self.pool.open(wait=False)

    async def probe(self) -> Sequence[Sample]:
        name = self.target.name
        self._started = time.monotonic()
        # The connection goes back to the pool it came from, even if a new one replaced it
        # meanwhile (a probe abandoned at its timeout finishes in the background).
        pool = self.pool
        # A pooled connection the server dropped while it sat idle (a restart, a shutdown in
        # progress) is replaced once, at once, as the Redis probe does: the probe reports
        # the server's state, not the stale connection's.
        for last_try in (False, True):
            with self.timings.timing_acquire():
                conn = await pool.getconn()
            try:
                async with conn.cursor(row_factory=dict_row) as cur:
                    await cur.execute(statement(conn.info.server_version))
                    row = await cur.fetchone()
                break
            except psycopg.OperationalError:
                if last_try or not conn.broken:
                    raise
            finally:
                await pool.putconn(conn)
        return samples(name, row)

    def local_samples(self) -> Sequence[Sample]:
        stats = self.pool.get_stats()
        for key, carried in self._closed_pools_stats.items():
            stats[key] = stats.get(key, 0) + carried
        size = stats.get("pool_size", 0)
        idle = stats.get("pool_available", 0)
        pool_stats = PoolStats(
            in_use=max(size - idle, 0),
            idle=idle,
            max_size=stats.get("pool_max", self.target.pool.max_size),
            min_size=stats.get("pool_min", self.target.pool.min_size),
            pending=stats.get("requests_waiting", 0),
            connect_errors=stats.get("connections_errors", 0),
            acquire_errors=self.timings.acquire_failures,
            lost=stats.get("connections_lost", 0),
        )
        return pool_samples(self.target.name, "exporter", pool_stats, self.timings)

    def classify(self, exc: BaseException) -> Failure:
        if isinstance(exc, TimeoutError | PoolTimeout):
            # Waiting for the pool timed out: say why the pool had no connection to give.
            cause = self._observer.error_since(self._started)
            if cause is not None:
                return classify_postgres(cause)
            return Failure("timeout", "no answer within the timeout")
        return classify_postgres(exc)

    async def close(self) -> None:
        await self.pool.close(timeout=1.0)
