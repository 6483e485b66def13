"""Redis: PING round trip through the exporter's own redis-py pool, the pool's stats, and the
server's saturation and replication state from `INFO`. With `sentinel:`, the master is found
through Sentinel at every probe, and what Sentinel reported is exported too."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import redis.exceptions

from resilience_exporter.classify.redis import classify_redis
from resilience_exporter.families import HistogramAccumulator, Sample, family, sample
from resilience_exporter.pools import PoolStats, PoolTimings, pool_samples
from resilience_exporter.probes.redis.client import RedisClients
from resilience_exporter.probes.redis.config import RedisTarget
from resilience_exporter.reasons import Failure, ProbeError

PING_DURATION = family(
    "resilience_redis_ping_duration_seconds",
    "Round trip of a PING on a pooled connection.",
    "histogram", ("target",), group="redis",
)  # fmt: skip
CONNECTED_CLIENTS = family(
    "resilience_redis_connected_clients",
    "Client connections open on the server (INFO connected_clients).",
    "gauge", ("target",), group="redis",
)  # fmt: skip
BLOCKED_CLIENTS = family(
    "resilience_redis_blocked_clients",
    "Clients waiting in a blocking command (BLPOP, WAIT, ...).",
    "gauge", ("target",), group="redis",
)  # fmt: skip
MAX_CLIENTS = family(
    "resilience_redis_max_clients",
    "The server's maxclients setting.",
    "gauge", ("target",), group="redis",
)  # fmt: skip
MEMORY_USED = family(
    "resilience_redis_memory_used_bytes",
    "Memory allocated by Redis (INFO used_memory).",
    "gauge", ("target",), group="redis",
)  # fmt: skip
MEMORY_MAX = family(
    "resilience_redis_memory_max_bytes",
    "The server's maxmemory setting; 0 means no limit (saturation ratios must skip it).",
    "gauge", ("target",), group="redis",
)  # fmt: skip
EVICTED_KEYS = family(
    "resilience_redis_evicted_keys_total",
    "Keys evicted because of the maxmemory limit.",
    "counter", ("target",), group="redis",
)  # fmt: skip
REJECTED_CONNECTIONS = family(
    "resilience_redis_rejected_connections_total",
    "Connections refused because of the maxclients limit.",
    "counter", ("target",), group="redis",
)  # fmt: skip
KEYSPACE_HITS = family(
    "resilience_redis_keyspace_hits_total",
    "Successful key lookups.",
    "counter", ("target",), group="redis",
)  # fmt: skip
KEYSPACE_MISSES = family(
    "resilience_redis_keyspace_misses_total",
    "Failed key lookups.",
    "counter", ("target",), group="redis",
)  # fmt: skip
ROLE = family(
    "resilience_redis_role",
    "1 for the server's replication role (master or replica).",
    "gauge", ("target", "role"), group="redis",
)  # fmt: skip
CONNECTED_REPLICAS = family(
    "resilience_redis_connected_replicas",
    "Replicas connected to this server.",
    "gauge", ("target",), group="redis",
)  # fmt: skip
REPLICATION_LINK_UP = family(
    "resilience_redis_replication_link_up",
    "Replicas only: 1 if the link to the master is up (master_link_status), else 0.",
    "gauge", ("target",), group="redis",
)  # fmt: skip
SENTINEL_UP = family(
    "resilience_redis_sentinel_up",
    "Sentinel targets only: 1 if a Sentinel answered the last master discovery, else 0.",
    "gauge", ("target",), group="redis",
)  # fmt: skip
SENTINEL_MASTER = family(
    "resilience_redis_sentinel_master",
    "Sentinel targets only: 1 for the master address Sentinel last reported for the service.",
    "gauge", ("target", "service", "address"), group="redis",
)  # fmt: skip

# INFO fields exported as they are: (field, family).
_INFO_FIELDS: tuple[tuple[str, Any], ...] = (
    ("connected_clients", CONNECTED_CLIENTS),
    ("blocked_clients", BLOCKED_CLIENTS),
    ("maxclients", MAX_CLIENTS),
    ("used_memory", MEMORY_USED),
    ("maxmemory", MEMORY_MAX),
    ("evicted_keys", EVICTED_KEYS),
    ("rejected_connections", REJECTED_CONNECTIONS),
    ("keyspace_hits", KEYSPACE_HITS),
    ("keyspace_misses", KEYSPACE_MISSES),
    ("connected_slaves", CONNECTED_REPLICAS),
)
_ROLES: Mapping[str, str] = {"master": "master", "slave": "replica"}


def _number(info: Mapping[str, Any], key: str) -> float | None:
    value = info.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class RedisProbe:
    def __init__(self, target: RedisTarget) -> None:
        self.target = target
        self.timings = PoolTimings()
        self.ping = HistogramAccumulator()
        self.clients = RedisClients(target, self.timings)
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
        info: dict[str, Any] = await client.info()
        return self._info_samples(info)

    def _info_samples(self, info: Mapping[str, Any]) -> list[Sample]:
        name = self.target.name
        out: list[Sample] = []
        for key, fam in _INFO_FIELDS:
            value = _number(info, key)
            if value is None:
                raise ProbeError("protocol", f"INFO has no numeric {key}")
            out.append(sample(fam, value, target=name))
        role = _ROLES.get(str(info.get("role", "")))
        if role is None:
            raise ProbeError("protocol", f"unknown replication role {info.get('role')!r}")
        out.append(sample(ROLE, 1, target=name, role=role))
        if role == "replica":
            link_up = 1.0 if info.get("master_link_status") == "up" else 0.0
            out.append(sample(REPLICATION_LINK_UP, link_up, target=name))
        return out

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
        config = self.target.sentinel
        if config is not None and clients.sentinel_up is not None:
            out.append(sample(SENTINEL_UP, 1.0 if clients.sentinel_up else 0.0, target=name))
            if clients.master is not None:
                host, port = clients.master
                address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                out.append(
                    sample(SENTINEL_MASTER, 1, target=name, service=config.service, address=address)
                )
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
