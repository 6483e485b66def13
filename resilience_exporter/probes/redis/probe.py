"""Redis: PING round trip through the exporter's own redis-py pool, the pool's stats, then
INFO and the other commands of `commands.py` in one pipeline. With `sentinel:`, the master is
found through Sentinel at every probe, and what Sentinel reported is exported too."""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis.exceptions

from resilience_exporter.classify.redis_errors import classify_redis
from resilience_exporter.metrics.families import Sample, SummaryAccumulator, family, sample
from resilience_exporter.metrics.pool_schema import PoolStats, PoolTimings, pool_samples
from resilience_exporter.probes.redis.client import RedisClients
from resilience_exporter.probes.redis.commands import ServerQueries
from resilience_exporter.probes.redis.config import RedisTarget
from resilience_exporter.probes.redis.sentinel import sentinel_samples
from resilience_exporter.reasons import Failure

PING_DURATION = family(
    "resilience_redis_ping_duration_seconds",
    "Round trip of a PING on a pooled connection (count and sum: rate(sum) / rate(count) is "
    "the mean; the probe's own histogram has the tail).",
    "summary",
    ("target",),
    group="redis",
)


class RedisProbe:
    def __init__(self, target: RedisTarget) -> None:
        self.target = target
        self.timings = PoolTimings()
        self.ping = SummaryAccumulator()
        self.clients = RedisClients(target, self.timings)
        self.queries = ServerQueries(target)
        self._started = time.monotonic()

    async def open(self) -> None:
        """Create the clients; nothing connects until the first probe. Safe after close()."""
        self.clients.open()

    async def probe(self) -> Sequence[Sample]:
        clients = self.clients
        clients.open()
        self._started = time.monotonic()
        if clients.sentinel is not None:
            await clients.discover_master()
        client = clients.client
        assert client is not None
        start = time.perf_counter()
        await client.ping()
        self.ping.observe(time.perf_counter() - start)
        return await self.queries.run(client)

    def local_samples(self) -> Sequence[Sample]:
        name = self.target.name
        clients = self.clients
        in_use, idle = clients.pool_stats()
        stats = PoolStats(
            in_use=in_use,
            idle=idle,
            max_size=self.target.pool.max_connections,
            connect_errors=clients.observer.errors,
            acquire_errors=self.timings.acquire_failures,
        )
        out = pool_samples(name, "exporter", stats, self.timings)
        out.append(sample(PING_DURATION, self.ping.value(), target=name))
        if self.target.sentinel is not None:
            out += sentinel_samples(name, self.target.sentinel, clients)
        return out

    def classify(self, exc: BaseException) -> Failure:
        if (
            isinstance(exc, redis.exceptions.ConnectionError)
            and "no connection available" in str(exc).lower()
        ):
            cause = self.clients.observer.error_since(self._started)
            if cause is not None:
                return classify_redis(cause)
            return Failure("timeout", "no pooled connection within the timeout")
        return classify_redis(exc)

    async def close(self) -> None:
        """Drop every client; open() creates new ones."""
        await self.clients.close()
